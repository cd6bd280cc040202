"""The seeded sample event log used by feature tests."""

from app.sampleworld import write_sample_log as make_log

__all__ = ["make_log"]
