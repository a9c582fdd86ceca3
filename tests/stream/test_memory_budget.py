"""The main process's memory is bounded by what the models read (issue #23, case 4).

48 valid ZTF alerts of ~50 kB each, every cutout a 2000 x 2000 float32 image (16 MB inflated,
under the 16 MiB decode cap), took the service's main process from ~300 MB to 2.7 GB: each
decoded alert held 48 MB of stamps, and three batches could be held. Decoding now keeps the
centre of each stamp that the survey's models read (ZTF 63 x 63, Rubin 320 x 320:
``schemas.decode.stamps.STAMP_MAX_SIDE``), and the batches waiting to be scored share a budget
of decoded bytes. The test runs the real service (its own process, a decode worker, the real
broker and Redis) over that worst case and reads the main process's peak resident size
(``VmHWM``) once every input is accounted for.
"""
from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from astropy.io import fits

from schemas.decode import decode_message
from tests.conftest import REPO
from tests.kafka_helpers import produce_values
from tests.stream.hostile_messages import _container, _first_record, real_ztf_packets
from tests.stream.test_service import classified, engine_cache, make_topics, runners, settings_env  # noqa: F401 - fixtures
from tests.stream.test_service_hostile import _free_port, _get_json

pytestmark = pytest.mark.integration

#: Peak resident size of the service's main process over the worst case below. Measured 356 MiB
#: after the change (models, torch, librdkafka), 2126 MiB before it (torch backend). See the printed line.
MAIN_PEAK_BOUND_MB = 800
N_ALERTS = 48
SIDE = 2000


def _big_cutout(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    data = np.zeros((SIDE, SIDE), np.float32)
    data[990:1010, 990:1010] = rng.normal(100.0, 5.0, (20, 20))  # a source at the centre, zeros elsewhere
    buf = io.BytesIO()
    fits.PrimaryHDU(data).writeto(buf)
    return gzip.compress(buf.getvalue(), compresslevel=9)


def ztf_alerts_with_huge_stamps(n: int) -> list[bytes]:
    """``n`` real ZTF alerts (distinct candids) whose three cutouts are 2000 x 2000 float32 images."""
    schema, record = _first_record(real_ztf_packets(1)[0])
    cutout = _big_cutout(0)
    out = []
    for i in range(n):
        record["candid"] = record["candidate"]["candid"] = 3_000_000_000_000_000 + i
        for field in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            record[field] = dict(record[field], stampData=cutout)
        out.append(_container(schema, record))
    return out


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def test_decoded_stamps_are_capped_to_what_the_models_read():
    (alert,) = decode_message(ztf_alerts_with_huge_stamps(1)[0])
    assert alert.science.shape == alert.template.shape == alert.difference.shape == (63, 63)
    assert np.nanmax(alert.science.data) > 50, "the centre, where the source is, was kept"
    assert sum(s.data.nbytes for s in (alert.science, alert.template, alert.difference)) < 50_000


def test_the_main_process_peak_memory_stays_bounded_on_alerts_with_huge_stamps(services, unique_name, engine_cache, tmp_path):
    name = unique_name
    make_topics(services, name, partitions=1)
    values = ztf_alerts_with_huge_stamps(N_ALERTS)
    assert max(len(v) for v in values) < 100_000
    produce_values(services.bootstrap_servers, f"{name}-alerts", [(f"big-{i}".encode(), v) for i, v in enumerate(values)])
    port = _free_port()
    env = {**os.environ, **settings_env(services, name, engine_cache, SC__BATCH__DECODE_WORKERS="1", SC__BATCH__MAX_SIZE="16",
                                        SC__OBSERVABILITY__METRICS_PORT=str(port), SC__OBSERVABILITY__LOG_FORMAT="json",
                                        SC__ENGINE__BACKEND="torch"),
           "PYTHONPATH": str(REPO)}
    log_path = tmp_path / "service.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", "--allow-untrained"], cwd=REPO, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline, stats, t0 = time.monotonic() + 240, {}, time.monotonic()
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    _, stats = _get_json(port, "/stats")
                except OSError:
                    stats = {}
                if sum(c["consumed"] for c in stats.values()) >= N_ALERTS:
                    break
                time.sleep(0.2)
            took = time.monotonic() - t0
            assert proc.poll() is None, "the service keeps running: " + log_path.read_text()[-3000:]
            peak_mb = _status_kb(proc.pid, "VmHWM") / 1024
            rss_mb = _status_kb(proc.pid, "VmRSS") / 1024
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    print(f"\n{N_ALERTS} ZTF alerts with {SIDE}x{SIDE} float32 stamps: main process peak RSS (VmHWM) {peak_mb:.0f} MiB, "
          f"RSS after {rss_mb:.0f} MiB (bound {MAIN_PEAK_BOUND_MB}); {took:.1f} s from start to all consumed")
    assert sum(c["consumed"] for c in stats.values()) == N_ALERTS and all(c["balanced"] for c in stats.values()), stats
    assert sum(c["published"] for c in stats.values()) == N_ALERTS, "valid alerts are published, not refused"
    assert len(classified(services, name, expect=N_ALERTS)) == N_ALERTS
    assert peak_mb < MAIN_PEAK_BOUND_MB


def test_no_more_is_consumed_while_the_decoded_batches_held_reach_the_budget(services, unique_name, engine_cache):
    """batch.max_in_flight = 3 lets three decoded batches wait; with a budget of decoded bytes
    that one batch fills, the service scores what it holds before consuming the next batch."""
    import threading

    from stream.config import load_settings
    from stream.service import build_service

    name = unique_name
    make_topics(services, name, partitions=1)
    packets = [p.read_bytes() for p in real_ztf_packets(24)]
    keys = {item.key for v in packets for item in decode_message(v)}
    produce_values(services.bootstrap_servers, f"{name}-alerts", [(f"a{i}".encode(), v) for i, v in enumerate(packets)])
    settings = load_settings(env=settings_env(services, name, engine_cache, SC__BATCH__DECODE_WORKERS="1", SC__BATCH__MAX_SIZE="2",
                                              SC__BATCH__MAX_IN_FLIGHT="3", SC__ENGINE__MODELS="realbogus"))
    service = build_service(settings, metrics_port=0)
    one_alert = 3 * 63 * 63 * 4
    service.decoded_bytes_budget = one_alert  # one decoded batch reaches it
    held_at_consume: list[int] = []
    submit = service._submit

    def watched_submit(envelopes):
        # decoded bytes the service holds, counted here from the batches' own results
        held = 0
        for batch in list(service._pending):
            if batch.decoded.done() and batch.decoded.exception() is None:
                outcomes, _ = batch.decoded.result()
                held += sum(s.data.nbytes for o in outcomes for item in o.items for s in (item.science, item.template, item.difference))
        held_at_consume.append(held)
        return submit(envelopes)

    service._submit = watched_submit
    thread = threading.Thread(target=service.run, kwargs={"max_idle_s": 4}, daemon=True)
    thread.start()
    thread.join(180)
    assert not thread.is_alive()
    assert len(classified(services, name, expect=len(keys))) == len(keys)
    assert held_at_consume and max(held_at_consume) < one_alert, held_at_consume


class _SlowRunner:
    """The real runner, one input per chunk, each inference held ``delay_s`` longer (a slow device)."""

    def __init__(self, runner, delay_s: float) -> None:
        self._runner, self._delay_s = runner, delay_s
        self.provenance, self.labels, self.max_batch = runner.provenance, runner.labels, 1

    def select(self, items):
        return self._runner.select(items)

    def preprocess(self, items):
        return self._runner.preprocess(items)

    def infer(self, batch):
        time.sleep(self._delay_s)
        return self._runner.infer(batch)

    def close(self) -> None:
        pass


def test_the_heart_beats_while_a_long_batch_is_scored(services, unique_name, engine_cache, runners):
    """Liveness reads the loop's last beat: a batch that takes seconds to score beats after
    every chunk, so /healthz does not get a busy member restarted."""
    import threading

    from schemas.alert import InputKind
    from stream.config import load_settings
    from stream.service import build_service

    name = unique_name
    make_topics(services, name, partitions=1)
    packets = [p.read_bytes() for p in real_ztf_packets(8)]
    produce_values(services.bootstrap_servers, f"{name}-alerts", [(f"a{i}".encode(), v) for i, v in enumerate(packets)])
    settings = load_settings(env=settings_env(services, name, engine_cache, SC__BATCH__MAX_SIZE="8"))
    slow = _SlowRunner(runners[InputKind.DIFFERENCE_ALERT][0], delay_s=0.4)
    service = build_service(settings, runners={InputKind.DIFFERENCE_ALERT: [slow]}, metrics_port=0)
    thread = threading.Thread(target=service.run, kwargs={"max_idle_s": 3}, daemon=True)
    stale: list[float] = []
    thread.start()
    while thread.is_alive():
        stale.append(time.monotonic() - service.metrics.last_loop_monotonic)
        time.sleep(0.05)
    assert service.metrics.totals().published == len(packets)
    print(f"\nlongest gap between beats while scoring {len(packets)} x 0.4 s: {max(stale):.2f} s")
    assert max(stale) < 1.5
