"""Retry decisions: network rules as data, the retry engine, the fixed schedule, fitting."""
