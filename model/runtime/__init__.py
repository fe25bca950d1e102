"""The torch-free runtime: artifact format, ONNX inference, templates, data readers, splits, metrics.

Imports only numpy and the standard library at module level (onnxruntime and tokenizers inside
:class:`logdistill.model.runtime.inference.OnnxClassifier`). The edge classifier imports from here and
nowhere else in :mod:`logdistill.model`; ``tests/test_import_graph.py`` holds that.
"""
