"""Helpers shared by the tests: the command, data paths, bad demo stores, child processes,
golden fingerprints."""
