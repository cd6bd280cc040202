"""Thin Faust agents: intake (decode or dead-letter), score, outcomes, alerts."""
