"""Faust agents: thin wiring from topics to the pure functions in features/policy/routestats.

Each agent catches errors per event: a Faust agent that raises stops consuming while the worker
stays up and its partitions are never committed again, so a bad event becomes a dead letter and
the stream goes on.
"""
