"""glsverify.onnx."""
