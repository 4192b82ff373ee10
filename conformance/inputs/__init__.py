"""What the checks feed a backend: operand data, Hypothesis strategies, golden cases from the seed notebook and ONNX."""
