"""Features: one definition, computed online (online.py) and offline in SQL (offline.py)."""
