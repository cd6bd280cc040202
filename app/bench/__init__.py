"""Benchmarks, kept out of the runtime modules; run with `make bench`."""
