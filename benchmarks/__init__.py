"""Benchmarks: a replayed night through the real service, side by side with the machine's limits.

``python -m benchmarks.night`` (``make bench``) is the one command; see :mod:`benchmarks.night`.
"""
