"""The problem model: a convolution problem, its passes, the shape corpus, operand memory layouts."""
