"""Shared fixtures.

Integration tests use real services: the embedded stack (Tansu + Redis, started once per
session) or, when ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` are set, those services. Topics
and Redis key prefixes are unique per test, so tests never see each other's data and can run
against a shared real cluster.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLES = REPO / "schemas" / "samples"


@dataclass(frozen=True)
class Services:
    bootstrap_servers: str
    redis_url: str
    embedded: object | None  # the EmbeddedStack when we started one
    #: Tansu needs an eager assignor; real Kafka keeps cooperative-sticky.
    assignment_strategy: str


@pytest.fixture(scope="session")
def services():
    """The Kafka broker and Redis for integration tests, started once per session."""
    from stream.stack import EMBEDDED_ASSIGNMENT_STRATEGY, EmbeddedStack, wait_for_kafka, wait_for_redis

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    redis_url = os.environ.get("REDIS_URL")
    stack = None
    if not (bootstrap and redis_url):
        stack = EmbeddedStack().start()
    try:
        bootstrap = bootstrap or stack.bootstrap_servers
        redis_url = redis_url or stack.redis_url
        wait_for_kafka(bootstrap)
        wait_for_redis(redis_url)
        strategy = os.environ.get("TEST_ASSIGNMENT_STRATEGY", EMBEDDED_ASSIGNMENT_STRATEGY if stack else "cooperative-sticky")
        yield Services(bootstrap, redis_url, stack, strategy)
    finally:
        if stack is not None:
            stack.stop()


@pytest.fixture
def unique_name(request) -> str:
    """A short unique prefix for topics, groups and Redis keys of one test."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    return f"t-{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def real_data_roots() -> tuple[Path, ...]:
    """Folders of real packets: the bundled samples always, ../shared/data too where it is present."""
    return (SAMPLES, SHARED_DATA) if SHARED_DATA.is_dir() else (SAMPLES,)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not found beside the repo ({SHARED_DATA})")
    return SHARED_DATA
