"""Routing and retry policies: pure functions from a request and read-only state to a decision."""
