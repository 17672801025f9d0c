"""Inference: separating whole tracks with a trained model, on any device and in the
deployment forms (ONNX runtime, CPU variants). Scoring what comes out is `evaluation`'s."""
