"""Experiments: arm assignment, statistics (the one ECE), event logs, A/B and shadow reports."""
