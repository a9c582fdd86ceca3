"""Streaming survey classifier: Kafka alerts in, classified records out.

Modules: ``config`` (settings), ``stack`` (embedded broker + Redis), ``envelope`` (a consumed
message, what it decodes to, the pure decode and in-batch dedup steps), ``stages`` (the batch
step as named stages), ``service`` (the loop, and the one place that wires it), ``cli`` (the
``survey-classifier`` command). The typed records and the decoders live in the top-level
``schemas`` package, the models in ``engines``.
"""
#: The package's one version (pyproject.toml reads it; CHANGELOG.md lists the releases).
__version__ = "0.1.0"
