"""Long-running services built on the engine: ``logdistill serve-teacher`` (the teacher over HTTP)."""
