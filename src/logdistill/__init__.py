"""logdistill: distil a large log classifier into a small one and run it on every edge node."""

__version__ = "0.1.0"
