"""Build-time model code: train, calibrate, evaluate, compile to a shared library."""
