"""Serve-time model code: the compiled scoring core and the promotion registry."""
