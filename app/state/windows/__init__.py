"""One ring mechanism for windowed statistics: count-based and time-bucket codecs."""
