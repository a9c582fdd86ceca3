"""Research: the studies behind the shipped weights, their reports, and the real-alert pools.

Not part of the product: left out of the wheel (``pyproject.toml``) and of both container
images (``deploy/docker``). Nothing in ``schemas/``, ``engines/`` or ``stream/`` imports it
(``tests/test_layers.py``); it imports them. Run its drivers from the repository root, e.g.
``python -m research.training.realbogus_study --help`` or ``python -m research.rubin_realbogus --help``.
"""
