"""Replaying archived nights onto Kafka: pure source readers, pacing and id re-writing, and the producer.

:mod:`stream.replay.sources`, :mod:`stream.replay.pacing` and :mod:`stream.replay.rewrite` import no
Kafka client; :mod:`stream.replay.publish` is the only producer side.
"""
from __future__ import annotations

__all__: list[str] = []
