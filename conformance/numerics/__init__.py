"""The numerics: the float64 oracle, padding, per-element bounds, the comparison, arithmetic probes."""
