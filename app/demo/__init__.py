"""`authpilot demo`: the product in a few minutes (run), its live view and its report."""
