"""Model complexity against inference latency: the sweep, its models and its frontier."""
