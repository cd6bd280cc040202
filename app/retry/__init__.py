"""Retry decisions: network rules as data, the counters they read, the retry engine, the fixed
schedule, the registry of retry policies, fitting the recovery table."""
