"""Ctrl-C and SIGTERM during a paced replay, in a real process on the real embedded broker (#26 case 7).

The replay runs as ``python -m stream.cli replay`` (the console command's code) at ``--rate 20``; once
a few of its messages are on the topic it gets the signal. It must print the summary line, name the
exact ``--skip`` that resumes it, and exit non-zero; resuming with that ``--skip`` must send every
remaining message exactly once.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream.stack import create_topics
from tests.conftest import REPO
from tests.stream.replay.test_publish import PACKETS, _headers
from tests.stream.subscribe.helpers import SAMPLES, consume_all

pytestmark = pytest.mark.integration


def _replay_cmd(bootstrap: str, topic: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stream.cli", "--log-format", "json", "replay", str(SAMPLES), "--topic", topic,
            "--bootstrap-servers", bootstrap, "--no-progress", *extra]


def _wait_for_messages(bootstrap: str, topic: str, count: int, timeout_s: float = 60.0) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watch-{topic}", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen, deadline = 0, time.monotonic() + timeout_s
        while seen < count:
            assert time.monotonic() < deadline, f"only {seen} messages on {topic} after {timeout_s} s"
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                seen += 1
    finally:
        consumer.close()


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_replay_prints_the_summary_and_the_skip_that_resumes_it(services, unique_name, signum, status):
    topic = f"{unique_name}-alerts"
    create_topics(services.bootstrap_servers, [topic], partitions=1)
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    proc = subprocess.Popen(_replay_cmd(services.bootstrap_servers, topic, "--rate", "20"), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_messages(services.bootstrap_servers, topic, 5)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    summary = json.loads(out.strip().splitlines()[-1])
    name = signal.Signals(signum).name
    assert summary["interrupted"] == name
    assert 5 <= summary["sent"] < len(PACKETS)
    hint = re.search(rf"replay: interrupted by {name} after (\d+) message\(s\) sent; resume with --skip (\d+)", err)
    assert hint, err
    sent, skip = int(hint.group(1)), int(hint.group(2))
    assert sent == summary["sent"] and skip == summary["resume_skip"] == sent
    assert len(consume_all(services.bootstrap_servers, topic)) == sent

    resumed = subprocess.run(_replay_cmd(services.bootstrap_servers, topic, "--skip", str(skip)), cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    indices = sorted(int(_headers(m)["sc-replay-index"]) for m in consume_all(services.bootstrap_servers, topic))
    assert indices == list(range(len(PACKETS)))  # every message exactly once across the two runs


RUBIN_POOL = REPO.parent / "shared" / "rubin_pool"


@pytest.mark.skipif(not RUBIN_POOL.is_dir(), reason="../shared/rubin_pool is not beside the checkout")
def test_a_signal_before_the_first_send_still_prints_the_summary(services, unique_name):
    # --speed first reads the archive's observation times (seconds on the Rubin pool's Fink dumps): stop it there.
    topic = f"{unique_name}-alerts"
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    cmd = [sys.executable, "-m", "stream.cli", "replay", str(RUBIN_POOL), "--topic", topic, "--bootstrap-servers",
           services.bootstrap_servers, "--speed", "60", "--skip", "3"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        assert proc.stderr is not None
        while "reading observation times" not in seen:
            chunk = proc.stderr.read(1)
            assert chunk, f"replay ended before reading the observation times: {seen}"
            seen += chunk
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, seen + err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["sent"] == 0 and summary["interrupted"] == "SIGINT" and summary["resume_skip"] == 3
    assert "replay: interrupted by SIGINT after 0 message(s) sent; resume with --skip 3" in err
