"""Features: one definition, computed online (online.py) and offline in SQL (offline.py), and
the data-quality summary written beside a training matrix (quality.py)."""
