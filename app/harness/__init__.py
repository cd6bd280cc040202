"""The gateway's side for demos, tests and benchmarks: traffic sources and load generation."""
