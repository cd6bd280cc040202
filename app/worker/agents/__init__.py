"""Thin Faust agents: the guarded intake loop, score, outcomes, owners, retries, alerts."""
