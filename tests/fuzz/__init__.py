"""Fuzzing the ingest API on a real worker and the real Temporal dev server.

``python -m tests.fuzz --requests 10000`` runs the full suite and prints its counts; ``tests/test_fuzz.py``
runs a short form as part of the normal test command.
"""
