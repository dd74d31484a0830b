"""Helpers shared by the tests: bad demo stores, child processes, golden fingerprints."""
