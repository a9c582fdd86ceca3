"""Replay onto the real embedded broker: every source kind, cadence, resume, --multiply, the command."""
from __future__ import annotations

import argparse
import json
import tarfile

import fastavro
import pytest

from schemas.decode import decode_message
from stream.replay.pacing import Pacer
from stream.replay.publish import ReplayError, replay
from stream.replay.sources import SourceMessage, iter_source
from tests.stream.subscribe.helpers import SAMPLES, consume_all

pytestmark = pytest.mark.integration

PACKETS = sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.name not in ("LICENSE", "README.md"))


def _headers(msg) -> dict[str, str]:
    return {k: v.decode() for k, v in (msg.headers() or [])}


def _make_source(kind: str, tmp_path):
    """The bundled night in the given source form, and the values replay should send."""
    if kind == "directory":
        return SAMPLES, [p.read_bytes() for p in PACKETS]
    if kind == "tar.gz":
        archive = tmp_path / "night.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for p in PACKETS:
                tar.add(p, arcname=p.name)
        return archive, [p.read_bytes() for p in PACKETS]
    if kind == "container":  # Spark-style part files: one multi-record container per schema
        folder = tmp_path / "parts"
        folder.mkdir()
        by_schema: dict[str, tuple[dict, list]] = {}
        for p in PACKETS:
            with p.open("rb") as fh:
                if fh.read(4) != b"Obj\x01":
                    continue
                fh.seek(0)
                reader = fastavro.reader(fh)
                key = json.dumps(reader.writer_schema, sort_keys=True)
                by_schema.setdefault(key, (reader.writer_schema, []))[1].extend(reader)
        count = 0
        for i, (schema, records) in enumerate(by_schema.values()):
            with (folder / f"part-{i:05d}.avro").open("wb") as fh:
                fastavro.writer(fh, schema, records)
            count += len(records)
        return folder, count
    if kind == "wire":
        folder = SAMPLES / "rubin" / "alerce-kafka"
        return folder, [p.read_bytes() for p in sorted(folder.glob("*.avro"))]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["directory", "tar.gz", "container", "wire"])
def test_every_bundled_packet_replays_in_each_source_form(services, unique_name, tmp_path, kind):
    source, expected = _make_source(kind, tmp_path)
    topic = f"{unique_name}-alerts"
    summary = replay(source, topic, bootstrap_servers=services.bootstrap_servers, partitions=3, progress=False)
    messages = consume_all(services.bootstrap_servers, topic)
    assert len({m.partition() for m in messages}) <= 3
    assert summary.unreadable == [] and summary.delivery_failures == 0 and summary.unflushed == 0
    if isinstance(expected, list):
        assert sorted(m.value() for m in messages) == sorted(expected)
    else:
        assert len(messages) == expected
    assert summary.sent == len(messages)
    assert summary.bytes == sum(len(m.value()) for m in messages)
    by_key: dict[bytes, set[int]] = {}
    for msg in messages:
        alert = decode_message(msg.value())[0]
        assert msg.key() == alert.object_id.encode()
        by_key.setdefault(msg.key(), set()).add(msg.partition())
        headers = _headers(msg)
        assert float(headers["sc-observed-mjd"]) == pytest.approx(alert.mjd, abs=1e-6)
        assert headers["sc-source-file"].startswith(str(source))
        assert "sc-multiply-copy" not in headers
    assert all(len(parts) == 1 for parts in by_key.values())  # one object, one partition


def test_topic_is_created_with_the_requested_partitions(services, unique_name):
    from confluent_kafka.admin import AdminClient

    topic = f"{unique_name}-alerts"
    replay(SAMPLES / "ztf" / "alerce", topic, bootstrap_servers=services.bootstrap_servers, partitions=2, progress=False)
    meta = AdminClient({"bootstrap.servers": services.bootstrap_servers}).list_topics(topic, timeout=10)
    assert len(meta.topics[topic].partitions) == 2


def test_recorded_cadence_reproduced_on_message_timestamps(services, unique_name):
    # Ten real Rubin alerts observed over 249 s (at 0, 62, 125, 187, 249 s); 125x faster: ~2 s.
    source = SAMPLES / "rubin" / "fink" / "v7_4"
    observed = {m.origin: m.observed_mjd for m in iter_source(source) if isinstance(m, SourceMessage)}
    topic = f"{unique_name}-alerts"
    speed = 125.0
    summary = replay(source, topic, bootstrap_servers=services.bootstrap_servers, pacer=Pacer.from_options(speed=speed),
                     partitions=1, progress=False)
    assert summary.pacing == "cadence" and summary.sent == 10
    messages = consume_all(services.bootstrap_servers, topic)
    first_mjd = min(observed.values())
    sent = sorted((m.timestamp()[1], observed[_headers(m)["sc-source-file"]]) for m in messages)
    t0 = sent[0][0]
    for ts_ms, mjd in sent:
        expected_ms = (mjd - first_mjd) * 86_400_000 / speed
        assert ts_ms - t0 == pytest.approx(expected_ms, abs=150), (ts_ms - t0, expected_ms)
    assert (sent[-1][0] - t0) / 1000 == pytest.approx(249.08 / speed, abs=0.15)


def test_resume_with_skip_sends_the_rest_exactly_once(services, unique_name):
    topic = f"{unique_name}-alerts"
    first = replay(SAMPLES, topic, bootstrap_servers=services.bootstrap_servers, limit=30, progress=False)
    assert first.sent == 30
    rest = replay(SAMPLES, topic, bootstrap_servers=services.bootstrap_servers, skip=first.sent, progress=False)
    assert rest.skipped == {"resume": 30} and rest.sent == len(PACKETS) - 30
    messages = consume_all(services.bootstrap_servers, topic)
    indices = sorted(int(_headers(m)["sc-replay-index"]) for m in messages)
    assert indices == list(range(len(PACKETS)))


def test_multiply_publishes_unique_ids_marked_in_headers(services, unique_name):
    topic = f"{unique_name}-alerts"
    summary = replay(SAMPLES, topic, bootstrap_servers=services.bootstrap_servers, copies=3, progress=False)
    assert summary.sent == 3 * len(PACKETS) and summary.multiply == 3
    messages = consume_all(services.bootstrap_servers, topic)
    ids = []
    for msg in messages:
        alert = decode_message(msg.value())[0]
        headers = _headers(msg)
        copy_index = int(headers["sc-multiply-copy"])
        assert (int(headers["sc-original-alert-id"]) == alert.alert_id) == (copy_index == 0)
        ids.append((alert.survey, alert.alert_id))
    assert len(set(ids)) == len(ids) == 3 * len(PACKETS)


def test_unreadable_entries_listed_in_summary(services, unique_name, tmp_path):
    (tmp_path / "a.avro").write_bytes((SAMPLES / "ztf" / "alerce" / "3044341005815015012.avro").read_bytes())
    (tmp_path / "b.avro").write_bytes(b"\xff\xd8\xff\xe0 a JPEG, not an alert")
    summary = replay(tmp_path, f"{unique_name}-alerts", bootstrap_servers=services.bootstrap_servers, progress=False)
    assert summary.sent == 1
    assert summary.skipped == {"unreadable": 1}
    assert [u["origin"] for u in summary.unreadable] == [str(tmp_path / "b.avro")]


def test_undeliverable_replay_fails_loudly(unique_name):
    # Nothing listens on this port: nothing can be delivered, and replay must say so.
    from stream.stack import free_port

    with pytest.raises(ReplayError) as info:
        replay(SAMPLES / "ztf" / "alerce", "t", bootstrap_servers=f"127.0.0.1:{free_port()}", create_topic=False,
               progress=False, flush_timeout_s=2, client_config={"message.timeout.ms": 1500})
    assert info.value.summary.unflushed + info.value.summary.delivery_failures >= 1


def test_replay_command_prints_one_json_summary(services, unique_name, capsys):
    from stream.commands import replay as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    topic = f"{unique_name}-alerts"
    args = parser.parse_args(["replay", str(SAMPLES / "rubin"), "--topic", topic, "--bootstrap-servers",
                              services.bootstrap_servers, "--rate", "200", "--multiply", "2", "--no-progress"])
    assert args.func(args) == 0
    # the summary is the last stdout line (unconfigured structlog may print log lines before it)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["sent"] == len(consume_all(services.bootstrap_servers, topic)) == 2 * 16
    assert summary["pacing"] == "rate" and summary["unreadable"] == []
    assert summary["elapsed_s"] >= (2 * 16 - 1) / 200


def test_cadence_on_an_unsorted_multi_night_folder_warns_sorts_and_caps_gaps(services, unique_name):
    # The bundled ZTF packets: out of time order (an alert of 2025 listed first) and spread over
    # seven years. At 60x the recorded cadence that is years of waiting; --max-gap 0.05 caps it.
    from structlog.testing import capture_logs

    source = SAMPLES / "ztf"
    topic = f"{unique_name}-alerts"
    expected = len([m for m in iter_source(source) if isinstance(m, SourceMessage)])
    with capture_logs() as logs:
        summary = replay(source, topic, bootstrap_servers=services.bootstrap_servers, partitions=1, progress=False,
                         pacer=Pacer.from_options(speed=60, max_gap_s=0.05))
    # --max-gap caps the waits: no warning, and the plan's estimate is the replay's true duration (#26 case 8)
    assert [e for e in logs if e["event"] == "replay_spans_more_than_a_night"] == []
    plans = [e for e in logs if e["event"] == "replay_plan"]
    assert len(plans) == 1 and plans[0]["span_days"] > 365 and plans[0]["max_gap_s"] == 0.05
    assert plans[0]["messages"] == expected
    assert plans[0]["replay_takes_s"] == pytest.approx(summary.elapsed_s, abs=1.0)
    assert summary.sent == expected and summary.late == 0 and summary.span_days > 365
    assert summary.gaps_cut_s > 86400 and summary.elapsed_s < 30
    messages = sorted(consume_all(services.bootstrap_servers, topic), key=lambda m: int(_headers(m)["sc-replay-index"]))
    mjds = [float(_headers(m)["sc-observed-mjd"]) for m in messages]
    assert len(mjds) == expected and mjds == sorted(mjds)  # sent in observation-time order


RUBIN_POOL = SAMPLES.parents[1].parent / "shared" / "rubin_pool"


@pytest.mark.skipif(not RUBIN_POOL.is_dir(), reason="../shared/rubin_pool is not beside the checkout")
def test_a_fink_rubin_dump_replays_every_alert_inspect_reads_as_rubins_own_packet(services, unique_name):
    """Fink's Parquet dumps carry broker columns (lc_features: a map of structs, no Avro form);
    replay sends Rubin's own packet for each row, so all 133 pool alerts go out and decode."""
    from schemas.walk import walk_decoded

    readable = {item.key for _, _, item in walk_decoded([RUBIN_POOL]) if hasattr(item, "key")}
    assert len(readable) == 133
    topic = f"{unique_name}-alerts"
    summary = replay(RUBIN_POOL, topic, bootstrap_servers=services.bootstrap_servers, progress=False)
    assert summary.unreadable == [] and summary.sent == 133
    sent = consume_all(services.bootstrap_servers, topic)
    decoded = [decode_message(m.value())[0] for m in sent]
    assert {a.key for a in decoded} == readable
    ids = [int.from_bytes(m.value()[1:5], "big") for m in sent if m.value()[:1] == b"\x00"]
    assert ids.count(1000) == 107 and ids.count(701) == 1   # lsst.v10_0 from the Fink dump; the boom packet as sent


def test_the_command_exits_non_zero_when_a_file_is_unreadable_unless_skip_bad(services, unique_name, tmp_path, capsys):
    from stream.commands import replay as command

    (tmp_path / "a.avro").write_bytes((SAMPLES / "ztf" / "alerce" / "3044341005815015012.avro").read_bytes())
    (tmp_path / "b.avro").write_bytes(b"\xff\xd8\xff\xe0 a JPEG, not an alert")
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    argv = ["replay", str(tmp_path), "--topic", f"{unique_name}-alerts", "--bootstrap-servers", services.bootstrap_servers,
            "--no-progress"]
    assert parser.parse_args(argv).func(parser.parse_args(argv)) == 1
    err = capsys.readouterr().err
    assert f"not sent: {tmp_path / 'b.avro'}" in err and "--skip-bad" in err
    args = parser.parse_args([*argv, "--skip-bad"])
    assert args.func(args) == 0


def test_cadence_estimates_honour_max_gap_and_the_whole_archive_span(services, unique_name):
    """#26 case 8: the span is the whole archive's from the first line (not the read-ahead's), the time
    estimate applies --max-gap (no "replay_takes_up_to: 59.8 d" when gaps are capped), and the progress
    bar counts messages (records of multi-record files), not files."""
    from structlog.testing import capture_logs

    source = SAMPLES / "ztf"
    mjds = [m.observed_mjd for m in iter_source(source) if isinstance(m, SourceMessage)]
    whole = max(mjds) - min(mjds)
    # A read-ahead of 5 sees a sliver of the archive before the first send; the span must still be the whole.
    with capture_logs() as logs:
        replay(source, f"{unique_name}-a", bootstrap_servers=services.bootstrap_servers, progress=False, limit=3,
               reorder_window=5, pacer=Pacer.from_options(speed=1e9))
    warned = [e for e in logs if e["event"] == "replay_spans_more_than_a_night"]
    assert len(warned) == 1 and warned[0]["span_days"] == pytest.approx(whole, abs=1e-3)
    with capture_logs() as logs:
        replay(source, f"{unique_name}-b", bootstrap_servers=services.bootstrap_servers, progress=False, limit=3,
               pacer=Pacer.from_options(speed=60, max_gap_s=2))
    assert not [e for e in logs if e["event"] == "replay_spans_more_than_a_night"]
    (plan,) = [e for e in logs if e["event"] == "replay_plan"]
    assert plan["replay_takes_s"] <= 2 * 2 + 0.1 and plan["messages"] == 3  # two gaps, each capped at 2 s

def test_progress_total_counts_messages_not_files(services, unique_name, tmp_path, capsys):
    from stream.commands import replay as command

    folder, expected = _make_source("container", tmp_path)
    assert len(list(folder.iterdir())) < expected
    assert count_hint_of(folder) == expected
    assert count_hint_of(SAMPLES) == len(PACKETS)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["replay", str(folder), "--topic", f"{unique_name}-alerts", "--bootstrap-servers",
                              services.bootstrap_servers, "--speed", "1e12"])
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert f"{expected}/{expected}" in err and "ETA" in err


@pytest.mark.skipif(not RUBIN_POOL.is_dir(), reason="../shared/rubin_pool is not beside the checkout")
def test_count_hint_of_the_pools_is_their_message_count():
    ztf_pool = RUBIN_POOL.parent / "ztf_pool"
    assert count_hint_of(RUBIN_POOL) == 133      # 41 Fink part files and a few packets: rows, not files
    assert count_hint_of(ztf_pool) == 2075       # one Parquet file: its rows


def count_hint_of(path):
    from stream.replay.sources import count_hint

    return count_hint(path)
