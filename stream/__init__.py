"""Streaming survey classifier: Kafka alerts in, classified records out.

Modules: ``config`` (settings), ``stack`` (embedded broker + Redis), ``alert`` (the internal
alert/exposure model), ``decode`` (pure packet decoding), ``service`` (wires the pipeline),
``cli`` (the ``survey-classifier`` command).
"""
__version__ = "0.1.0"
