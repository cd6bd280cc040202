"""The `authpilot` command: one module per command group, each calling library functions."""
