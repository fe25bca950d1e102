"""``logdistill bench distill|cascade|scaleout|techniques`` (registry: :mod:`logdistill.bench`)."""
