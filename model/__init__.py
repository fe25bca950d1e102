"""logdistill.model: the torch-free runtime, the torch distillation engine, and what runs them.

* :mod:`logdistill.model.runtime`: no torch. The artifact format, ONNX inference, templates, data
  readers, splits and metrics: what the edge classifier (and anything else torch-free) may import.
* :mod:`logdistill.model.engine`: the distillation engine (torch, transformers): students, teachers,
  losses, training, the pipeline, export. Modules import torch themselves, so importing the package
  costs nothing.
* :mod:`logdistill.model.cli`: entry modules of ``logdistill demo|distill|label|predict`` (light at
  import). ``teacher`` and ``evaluate`` are engine modules that also carry their subcommand.
* :mod:`logdistill.model.services`: ``logdistill serve-teacher``, the teacher over HTTP.
* :mod:`logdistill.model.bench`: ``logdistill bench distill|cascade|scaleout|techniques``.

``model/data/`` holds the bundled sample logs (package data of ``logdistill.model``).
"""
