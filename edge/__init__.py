"""logdistill.edge: the classifier each edge node runs (ONNX Runtime + tokenizers; never torch)."""
