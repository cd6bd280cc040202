"""Routing policies (pure functions), the dispatcher that composes them, and their registry."""
