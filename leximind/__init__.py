"""LexiMind: shared settings, queue names, embedded services and the command line."""
