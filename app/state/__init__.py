"""Stream state: windowed rings packed into one table value per key, and owned-key publishing."""
