"""The service against the real broker and Redis: nothing lost, nothing published twice.

Every test gets its own topics, group and Redis key prefix. The models are the shipped cards'
weights (``allow_untrained`` is set, so these tests also pass before trained weights exist;
records then say ``untrained``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas.classified_record import decode_classified
from schemas.decode import decode_message
from schemas.decode.errors import DecodeError
from stream.config import load_settings
from stream.stack import create_topics
from tests.conftest import REPO, SAMPLES, SHARED_DATA
from tests.kafka_helpers import produce_files, produce_values, read_topic

pytestmark = pytest.mark.integration

BACKEND = os.environ.get("SC_TEST_BACKEND", "onnxruntime")
#: The model whose P(real) is each survey's real_bogus (its card: real_bogus = true, surveys = [that survey]).
REAL_BOGUS_MODELS = {"ztf": "realbogus", "rubin": "rubin_realbogus"}


def sample_files() -> list[Path]:
    return sorted(p for p in SAMPLES.rglob("*.avro"))


def expected_keys(paths) -> Counter:
    keys: Counter = Counter()
    for p in paths:
        for item in decode_message(p.read_bytes()):
            keys[item.key] += 1
    return keys


def settings_env(services, name: str, cache_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SC__KAFKA__ALERT_TOPICS": f"{name}-alerts",
        "SC__KAFKA__OUTPUT_TOPIC": f"{name}-classified",
        "SC__KAFKA__DEAD_LETTER_TOPIC": f"{name}-dlq",
        "SC__KAFKA__GROUP_ID": f"{name}-group",
        "SC__KAFKA__ASSIGNMENT_STRATEGY": services.assignment_strategy,
        "SC__KAFKA__SESSION_TIMEOUT_MS": "6000",
        "SC__REDIS__KEY_PREFIX": f"{name}:",
        "SC__REDIS__RETRY_INITIAL_S": "0.2",
        "SC__REDIS__RETRY_MAX_S": "1",
        "SC__ENGINE__ALLOW_UNTRAINED": "true",
        "SC__ENGINE__BACKEND": BACKEND,
        "SC__ENGINE__CACHE_DIR": str(cache_dir),
        "SC__OBSERVABILITY__METRICS_PORT": "0",
        "SC__OBSERVABILITY__HEALTH_PORT": "0",
        "SC__BATCH__MAX_SIZE": "32",
        "SC__BATCH__DECODE_WORKERS": "0",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def runners(services, engine_cache):
    from stream.service import load_runners

    settings = load_settings(env=settings_env(services, "runners", engine_cache))
    loaded = load_runners(settings)
    yield loaded
    for rs in loaded.values():
        for r in rs:
            r.close()


def make_topics(services, name: str, partitions: int = 4) -> None:
    create_topics(services.bootstrap_servers, [f"{name}-alerts", f"{name}-classified", f"{name}-dlq"], partitions=partitions)


def start_service(settings, runners, **run_kwargs):
    from stream.service import build_service

    service = build_service(settings, runners=runners, metrics_port=0)
    thread = threading.Thread(target=service.run, kwargs=run_kwargs, daemon=True)
    thread.start()
    return service, thread


def classified(services, name, expect=None, timeout_s=60.0):
    return [decode_classified(r.value) for r in read_topic(services.bootstrap_servers, f"{name}-classified", expect=expect, timeout_s=timeout_s)]


def test_every_sample_packet_classified_once_and_bad_ones_dead_lettered(services, unique_name, engine_cache, runners):
    """The bundled packets, a truncated copy and junk; with ../shared/data, its six pre-survey JPEG packets too."""
    name = unique_name
    make_topics(services, name)
    files = sample_files()
    keys = expected_keys(files)
    jpeg = [p for p in (SHARED_DATA / "ztf" / "ztf-avro-alert").glob("*.avro") if _refused_reason(p) == "jpeg_cutout"]
    assert len(jpeg) == (6 if SHARED_DATA.is_dir() else 0), "the six pre-survey JPEG packets"
    truncated = files[0].read_bytes()[:700]
    produce_files(services.bootstrap_servers, f"{name}-alerts", files + jpeg)
    produce_values(services.bootstrap_servers, f"{name}-alerts", [(b"trunc", truncated), (b"junk", b"\x00\x00\x00\x02\xc0garbage")])

    settings = load_settings(env=settings_env(services, name, engine_cache))
    service, thread = start_service(settings, runners, max_idle_s=4)
    thread.join(180)
    assert not thread.is_alive()

    records = classified(services, name, expect=len(keys))
    got = Counter(f"{r['survey']}:{r['alert_id']}" for r in records)
    assert set(got) == set(keys), "one record per distinct alert"
    assert max(got.values()) == 1, f"published twice: {[k for k, v in got.items() if v > 1]}"
    upstream_dups = sum(keys.values()) - len(keys)

    loaded = {r.provenance.name: r.provenance for rs in runners.values() for r in rs}
    for r in records:
        assert r["real_bogus_model"] == REAL_BOGUS_MODELS[r["survey"]]
        ours = next(m for m in r["models"] if m["name"] == r["real_bogus_model"])
        assert ours["validated"] is True and ours["weights_sha256"] == loaded[ours["name"]].weights_sha256
        assert r["untrained"] == any(not m["trained"] for m in r["models"])
        assert 0.0 <= r["real_bogus"] <= 1.0 and r["unscored_reason"] is None
        assert r["source_topic"] == f"{name}-alerts"
        assert r["classified_ms"] >= r["ingested_ms"] > 0
    ztf = [r for r in records if r["survey"] == "ztf"]
    assert ztf and all("drb" in r["survey_scores"] or "rb" in r["survey_scores"] for r in ztf)

    dlq = read_topic(services.bootstrap_servers, f"{name}-dlq", expect=len(jpeg) + 2)
    reasons = Counter(r.headers["sc-reason"].decode() for r in dlq)
    assert reasons["jpeg_cutout"] == len(jpeg)
    assert reasons["truncated_avro"] >= 1
    assert sum(reasons.values()) == len(jpeg) + 2
    for r in dlq:
        assert r.headers["sc-source-topic"].decode() == f"{name}-alerts"
        assert int(r.headers["sc-source-offset"]) >= 0

    totals = service.metrics.totals()
    assert totals.balanced
    assert totals.published == len(keys)
    assert totals.duplicates == upstream_dups
    assert totals.dead_lettered == len(jpeg) + 2


def _refused_reason(path: Path) -> str | None:
    try:
        decode_message(path.read_bytes())
    except DecodeError as exc:
        return exc.reason.value
    return None


def test_replay_from_offset_zero_is_all_duplicates(services, unique_name, engine_cache, runners):
    name = unique_name
    make_topics(services, name)
    files = [p for p in sample_files() if "kowalski" in str(p)]
    keys = expected_keys(files)
    produce_files(services.bootstrap_servers, f"{name}-alerts", files)
    settings = load_settings(env=settings_env(services, name, engine_cache))
    first, t1 = start_service(settings, runners, max_idle_s=3)
    t1.join(120)
    assert len(classified(services, name, expect=len(keys))) == len(keys)

    # A new group starts at offset 0 of the same topic: everything is already published.
    again = load_settings(env=settings_env(services, name, engine_cache, SC__KAFKA__GROUP_ID=f"{name}-replay"))
    second, t2 = start_service(again, runners, max_idle_s=3)
    t2.join(120)
    totals = second.metrics.totals()
    assert totals.consumed == len(files) and totals.published == 0 and totals.duplicates == len(files)
    assert len(classified(services, name)) == len(keys), "nothing republished"


def test_rebalance_late_joiner_and_leaver_lose_nothing(services, unique_name, engine_cache, runners):
    name = unique_name
    make_topics(services, name, partitions=4)
    files = [p for p in sample_files() if "/ztf/" in str(p)]
    keys = expected_keys(files)
    half = len(files) // 2
    settings = load_settings(env=settings_env(services, name, engine_cache, SC__BATCH__MAX_SIZE="4", SC__BATCH__DECODE_WORKERS="1"))

    a, ta = start_service(settings, runners)
    produce_files(services.bootstrap_servers, f"{name}-alerts", files[:half])
    time.sleep(2)
    b, tb = start_service(settings, runners, max_idle_s=12)   # joins late: partitions move
    produce_files(services.bootstrap_servers, f"{name}-alerts", files[half:])
    time.sleep(3)
    # The leaver leaves once the joiner holds partitions. When the leaver left while Tansu was still
    # rebalancing for the joiner, the joiner was never assigned at all, even minutes after (2 of 8
    # runs here, embedded Tansu only; the joiner kept polling and no assignment came): a stalled
    # group, most likely the broker's (not proven), which this test is not about; a real Kafka
    # coordinator completes the rebalance without the member that left.
    deadline = time.monotonic() + 90
    while not b.metrics.assigned and time.monotonic() < deadline:
        time.sleep(0.2)
    assert b.metrics.assigned, "the late joiner was never given partitions"
    a.request_stop()                                          # leaves: its partitions move to b
    ta.join(60)
    tb.join(180)
    assert not ta.is_alive() and not tb.is_alive()

    records = classified(services, name, expect=len(keys))
    got = Counter(f"{r['survey']}:{r['alert_id']}" for r in records)
    assert set(got) == set(keys), f"lost: {set(keys) - set(got)}"
    assert max(got.values()) == 1
    consumed = a.metrics.totals().consumed + b.metrics.totals().consumed
    assert consumed >= sum(keys.values())
    assert a.metrics.totals().balanced and b.metrics.totals().balanced


def test_redis_outage_pauses_and_resumes_without_loss_or_duplicates(services, unique_name, engine_cache, runners):
    if services.embedded is None:
        pytest.skip("needs the embedded Redis to freeze it")
    name = unique_name
    make_topics(services, name)
    files = [p for p in sample_files() if "/ztf/" in str(p)]
    keys = expected_keys(files)
    settings = load_settings(env=settings_env(services, name, engine_cache, SC__BATCH__MAX_SIZE="8"))
    service, thread = start_service(settings, runners, max_idle_s=6)
    produce_files(services.bootstrap_servers, f"{name}-alerts", files[:10])
    deadline = time.monotonic() + 60
    while service.metrics.totals().published < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    services.embedded.pause_service("redis")
    try:
        produce_files(services.bootstrap_servers, f"{name}-alerts", files[10:])
        deadline = time.monotonic() + 30
        while service.metrics.redis_up and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not service.metrics.redis_up, "the service noticed Redis is gone"
        stalled = service.metrics.totals().published
        time.sleep(2)
        assert service.metrics.totals().published == stalled, "nothing published while Redis is away"
    finally:
        services.embedded.resume_service("redis")
    thread.join(180)
    assert not thread.is_alive()
    records = classified(services, name, expect=len(keys))
    got = Counter(f"{r['survey']}:{r['alert_id']}" for r in records)
    assert set(got) == set(keys) and max(got.values()) == 1
    assert service.metrics.totals().balanced


def test_kill_9_mid_stream_then_restart(services, unique_name, engine_cache, runners):
    """A member killed with SIGKILL loses nothing; duplicates only inside the documented window."""
    from stream.replay.rewrite import make_copy
    from stream.replay.sources import iter_source

    name = unique_name
    make_topics(services, name)
    base = [m for p in sample_files() if "kowalski" in str(p) for m in iter_source(p)]
    values = [(None, make_copy(m, k).value) for k in range(8) for m in base]
    produce_values(services.bootstrap_servers, f"{name}-alerts", values)
    n = len(values)
    env = {**os.environ, **settings_env(services, name, engine_cache, SC__BATCH__MAX_SIZE="2", SC__BATCH__MAX_IN_FLIGHT="1",
                                        SC__BATCH__DECODE_WORKERS="1")}
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "--log-format", "json", "run", "--max-idle", "30"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watcher = Consumer({"bootstrap.servers": services.bootstrap_servers, "group.id": f"{name}-watch", "enable.auto.commit": False})
    try:
        watcher.assign([TopicPartition(f"{name}-classified", p, 0) for p in range(4)])
        seen, deadline = 0, time.monotonic() + 120
        while seen < n // 5 and time.monotonic() < deadline:
            msg = watcher.poll(0.05)
            if msg is not None and not msg.error():
                seen += 1
            assert proc.poll() is None, "service exited early"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        watcher.close()
        if proc.poll() is None:
            proc.kill()
    before = len(classified(services, name))
    assert 0 < before < n, "killed mid-stream"

    settings = load_settings(env=settings_env(services, name, engine_cache, SC__BATCH__MAX_SIZE="2", SC__BATCH__MAX_IN_FLIGHT="1"))
    service, thread = start_service(settings, runners, max_idle_s=5)
    thread.join(240)
    records = classified(services, name, expect=n)
    got = Counter(f"{r['survey']}:{r['alert_id']}" for r in records)
    assert len(got) == n, f"lost {n - len(got)} alerts"
    dups = sum(v - 1 for v in got.values())
    # The one window: output acknowledged, Redis mark not yet written, then SIGKILL. At most one batch.
    assert dups <= 2, f"{dups} duplicates: more than one batch of the documented window"


def _wise_cutout_message(index: int) -> bytes:
    """A multi-band cutout exposure (W1, W2, W3 as named extensions) packed in our exposure schema."""
    import io

    import numpy as np
    from astropy.io import fits

    from engines.training.synth_wise import render_cutout
    from schemas.decode import pack_exposure

    cube, _ = render_cutout(("star", "galaxy", "quasar")[index % 3], np.random.default_rng(index))
    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(cube[b].astype(np.float32), name=f"W{b + 1}") for b in range(3)]
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return pack_exposure(buf.getvalue(), exposure_id=f"wise-{index}", instrument="WISE", filter="W1,W2,W3",
                         exposure_time_s=7.7, mjd=55300.0 + index, kind="multiband_cutout", object_id=f"J{index:04d}",
                         ra=150.0, dec=2.0, compress=True)


def test_exposure_topic_is_scored_by_the_models_for_its_kind(services, unique_name, engine_cache):
    """Alerts and multi-band cutouts in one member: each kind gets its registry's models and output topic."""
    from stream.service import build_service

    name = unique_name
    create_topics(services.bootstrap_servers, [f"{name}-alerts", f"{name}-exposures", f"{name}-classified",
                                               f"{name}-classified-exp", f"{name}-dlq"], partitions=2)
    produce_values(services.bootstrap_servers, f"{name}-exposures", [(None, _wise_cutout_message(i)) for i in range(6)])
    files = [p for p in sample_files() if "kowalski" in str(p)][:4]
    produce_files(services.bootstrap_servers, f"{name}-alerts", files)
    env = settings_env(services, name, engine_cache, SC__KAFKA__EXPOSURE_TOPICS=f"{name}-exposures",
                       SC__KAFKA__EXPOSURE_OUTPUT_TOPIC=f"{name}-classified-exp", SC__ENGINE__MODELS="realbogus,iicnet")
    service = build_service(load_settings(env=env), metrics_port=0)
    assert {k.value: [r.provenance.name for r in rs] for k, rs in service.runners.items()} == {
        "difference_alert": ["realbogus"], "multiband_cutout": ["iicnet"]}
    service.run(max_idle_s=4)

    exposures = [decode_classified(r.value) for r in read_topic(services.bootstrap_servers, f"{name}-classified-exp", expect=6)]
    assert sorted(r["alert_id"] for r in exposures) == [f"wise-{i}" for i in range(6)]
    for r in exposures:
        assert r["kind"] == "multiband_cutout" and r["real_bogus"] is None
        assert set(r["class_scores"]) == {"iicnet.galaxy", "iicnet.quasar", "iicnet.star"}
        assert abs(sum(r["class_scores"].values()) - 1.0) < 1e-4
        assert [m["name"] for m in r["models"]] == ["iicnet"]
    assert len(classified(services, name, expect=4)) == 4
    assert service.metrics.totals().balanced and service.metrics.totals().published == 10


def _raw_hst_message(index: int) -> bytes:
    """A full-size raw ACS/WFC frame (2 SCI chips of 2068 x 4144 uint16: bias, sky, a galaxy-like
    blob), noise-free so that it packs small enough for the embedded broker's message limit."""
    import io

    import numpy as np
    from astropy.io import fits

    from schemas.decode import pack_exposure

    yy, xx = np.mgrid[0:2068, 0:4144]
    hdus = [fits.PrimaryHDU()]
    for chip in (1, 2):
        frame = 2100.0 + 40.0 + 3000.0 * np.exp(-(((yy - 1000) / 300.0) ** 2 + ((xx - 1500 - 300 * index) / 500.0) ** 2))
        hdus.append(fits.ImageHDU(np.round(frame).astype(np.uint16), name="SCI", ver=chip))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return pack_exposure(buf.getvalue(), exposure_id=f"jraw{index}q", instrument="ACS/WFC", filter="F606W",
                         exposure_time_s=500.0, mjd=60000.0 + index, kind="raw_exposure", compress=True)


def test_raw_hst_exposures_are_scored_by_the_shipped_hrcelestialnet(services, unique_name, engine_cache):
    """Full-size raw frames through the service (torch backend: the 388 MB ONNX export is left to
    `engines build`): one record per exposure, its two chips averaged, HR-CelestialNet's provenance."""
    from engines.registry import load_registry
    from schemas.alert import InputKind
    from stream.service import build_service

    name = unique_name
    create_topics(services.bootstrap_servers, [f"{name}-alerts", f"{name}-exposures", f"{name}-classified",
                                               f"{name}-classified-exp", f"{name}-dlq"], partitions=1)
    values = [_raw_hst_message(i) for i in range(2)]
    assert all(len(v) < 4 << 20 for v in values)
    produce_values(services.bootstrap_servers, f"{name}-exposures", [(None, v) for v in values])
    env = settings_env(services, name, engine_cache, SC__KAFKA__EXPOSURE_TOPICS=f"{name}-exposures",
                       SC__KAFKA__EXPOSURE_OUTPUT_TOPIC=f"{name}-classified-exp", SC__ENGINE__MODELS="hrcelestialnet",
                       SC__ENGINE__BACKEND="torch", SC__ENGINE__ALLOW_UNTRAINED="false")
    service = build_service(load_settings(env=env), metrics_port=0)
    assert [r.provenance.name for r in service.runners.get(InputKind.RAW_EXPOSURE, [])] == ["hrcelestialnet"]
    service.run(max_idle_s=4)
    records = [decode_classified(r.value) for r in read_topic(services.bootstrap_servers, f"{name}-classified-exp", expect=2)]
    assert sorted(r["alert_id"] for r in records) == ["jraw0q", "jraw1q"]
    card = load_registry().card("hrcelestialnet")
    for r in records:
        assert r["kind"] == "raw_exposure" and set(r["class_scores"]) == {"hrcelestialnet.galaxy", "hrcelestialnet.nebula_star_cluster"}
        assert abs(sum(r["class_scores"].values()) - 1.0) < 1e-4
        assert [(m["name"], m["version"], m["trained"]) for m in r["models"]] == [("hrcelestialnet", card.version, True)]
    totals = service.metrics.totals()
    assert totals.balanced and totals.published == 2 and totals.dead_lettered == 0


def test_message_too_big_for_the_dead_letter_topic_is_dead_lettered_without_its_value(services, unique_name, engine_cache):
    """A raw frame over decode.max_message_bytes and over what the producer may send: its dead
    letter keeps the reason and where the original sits, not the bytes, and the line goes on
    (a dead letter that cannot be produced would stop the service on every restart)."""
    from stream.service import build_service

    name = unique_name
    make_topics(services, name, partitions=1)
    big = _raw_hst_message(0)                                             # ~2.3 MB
    files = [p for p in sample_files() if "kowalski" in str(p)][:3]
    produce_values(services.bootstrap_servers, f"{name}-alerts", [(b"big", big)])
    produce_files(services.bootstrap_servers, f"{name}-alerts", files)
    env = settings_env(services, name, engine_cache, SC__DECODE__MAX_MESSAGE_BYTES="1000000",
                       SC_KAFKA__MESSAGE_MAX_BYTES="2000000", SC__ENGINE__MODELS="realbogus")
    service = build_service(load_settings(env=env), metrics_port=0)
    assert service.dead_letter_max_value_bytes < len(big)
    service.run(max_idle_s=4)
    (dead,) = read_topic(services.bootstrap_servers, f"{name}-dlq", expect=1)
    assert dead.headers["sc-reason"].decode() == "too_large" and dead.value in (None, b"")
    assert str(len(big)) in dead.headers["sc-value-omitted"].decode()
    assert int(dead.headers["sc-source-offset"]) == 0
    assert len(classified(services, name, expect=len(expected_keys(files)))) == len(expected_keys(files))
    totals = service.metrics.totals()
    assert totals.balanced and totals.dead_lettered == 1


class _FailingRunner:
    """Fault injection: the real runner, raising on its ``fail_on``-th inference (an engine crash)."""

    def __init__(self, runner, fail_on: int) -> None:
        self._runner, self._calls, self._fail_on = runner, 0, fail_on
        self.provenance, self.labels, self.max_batch = runner.provenance, runner.labels, runner.max_batch

    def select(self, items):
        return self._runner.select(items)

    def preprocess(self, items):
        return self._runner.preprocess(items)

    def infer(self, batch):
        self._calls += 1
        if self._calls == self._fail_on:
            raise RuntimeError("injected engine failure")
        return self._runner.infer(batch)

    def close(self) -> None:
        pass


def test_engine_failure_crashes_loudly_and_commits_nothing_past_it(services, unique_name, engine_cache, runners):
    from schemas.alert import InputKind
    from stream.service import build_service

    name = unique_name
    make_topics(services, name, partitions=1)
    files = [p for p in sample_files() if "kowalski" in str(p)][:20]
    keys = expected_keys(files)
    produce_files(services.bootstrap_servers, f"{name}-alerts", files)
    settings = load_settings(env=settings_env(services, name, engine_cache, SC__BATCH__MAX_SIZE="4", SC__BATCH__MAX_IN_FLIGHT="3",
                                              SC__BATCH__DECODE_WORKERS="1"))
    rb = runners[InputKind.DIFFERENCE_ALERT][0]
    # The first batch fails while later ones wait, decoded, behind it (the decode worker's start
    # makes the first batch slow): none of them may be published or committed on the way out.
    failing = build_service(settings, runners={InputKind.DIFFERENCE_ALERT: [_FailingRunner(rb, fail_on=1)]}, metrics_port=0)
    with pytest.raises(RuntimeError, match="injected engine failure"):
        failing.run(max_idle_s=5)
    assert failing.metrics.totals().published == 0

    probe = Consumer({"bootstrap.servers": services.bootstrap_servers, "group.id": f"{name}-group"})
    committed = probe.committed([TopicPartition(f"{name}-alerts", 0)], timeout=10)[0].offset
    probe.close()
    assert committed < 0, f"nothing may be committed past the failed batch, found offset {committed}"
    assert len(read_topic(services.bootstrap_servers, f"{name}-classified", idle_s=1.0)) == 0

    again, thread = start_service(settings, runners, max_idle_s=4)
    thread.join(120)
    got = Counter(f"{r['survey']}:{r['alert_id']}" for r in classified(services, name, expect=len(keys)))
    assert set(got) == set(keys) and max(got.values()) == 1
