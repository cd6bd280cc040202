"""Experiments: arm assignment, honest statistics, off-policy estimates."""
