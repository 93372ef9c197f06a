"""Runtime-neutral quantization: block formats, RTN and calibrated rounding, per-tensor policy."""
