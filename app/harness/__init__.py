"""The gateway's side for demos, tests and benchmarks: traffic sources, load generation and the
worker run as a subprocess."""
