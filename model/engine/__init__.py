"""The distillation engine: students, teachers, losses, training, the pipeline, ONNX export (torch).

Each module imports torch/transformers itself (some only inside functions), so the package import is free.
"""
