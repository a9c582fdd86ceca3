"""Redis dedup marks against the real Redis."""
from __future__ import annotations

import pytest

from stream.dedup import DedupUnavailable, RedisDedup

pytestmark = pytest.mark.integration


def test_marks_are_seen_with_ttl_and_forgotten(services, unique_name):
    d = RedisDedup(services.redis_url, key_prefix=f"{unique_name}:", ttl_s=120)
    assert d.published(["ztf:1", "ztf:2"]) == set()
    d.mark({"ztf:1": "classified/0/5"})
    assert d.published(["ztf:1", "ztf:2"]) == {"ztf:1"}
    ttl = d._client.ttl(f"{unique_name}:ztf:1")
    assert 0 < ttl <= 120
    assert d._client.get(f"{unique_name}:ztf:1") == b"classified/0/5"
    assert d.forget(["ztf:1"]) == 1
    assert d.published(["ztf:1"]) == set()
    d.close()


def test_unreachable_redis_raises_our_error():
    from stream.stack import free_port

    d = RedisDedup(f"redis://127.0.0.1:{free_port()}/0", key_prefix="x:", ttl_s=10, timeout_s=0.5)
    assert d.ping() is False
    with pytest.raises(DedupUnavailable):
        d.published(["ztf:1"])
    with pytest.raises(DedupUnavailable):
        d.mark({"ztf:1": "t/0/0"})
