"""Features: one definition (definitions.py), computed online (online.py) and offline (offline.py)."""
