"""#26 case 10: a view of offsets and lag, on the real embedded broker.

``subscribe`` reports each partition's position, end offset and lag; reading a topic that holds
no classified records (the input alerts, by mistake) is one line and exit status 2; ``status``
reads the service's consumer group from the broker: committed offsets, ends, lag, members.
"""
from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream.cli import main
from stream.stack import create_topics
from tests.kafka_helpers import produce_files
from tests.stream.replay.test_publish import PACKETS
from tests.stream.subscribe.helpers import classified_records
from tests.stream.subscribe.test_reader import _fill

pytestmark = pytest.mark.integration


def _summary(err: str) -> dict:
    return json.loads([line for line in err.splitlines() if line.startswith("{")][-1])


def test_subscribe_reports_end_offsets_and_lag_per_partition(services, unique_name, capsys):
    records = classified_records()
    topic = f"{unique_name}-classified"
    _fill(services.bootstrap_servers, topic, records, partitions=3)
    argv = ["subscribe", "--topic", topic, "--bootstrap-servers", services.bootstrap_servers, "--quiet", "--until-end"]
    assert main([*argv, "--lag"]) == 0
    err = capsys.readouterr().err
    summary = _summary(err)
    parts = summary["partitions"]
    assert [p["partition"] for p in parts] == [0, 1, 2]
    assert sum(p["end"] for p in parts) == len(records)          # the true ends (Tansu's ListOffsets would say 1 each)
    assert all(p["position"] == p["end"] and p["lag"] == 0 for p in parts) and summary["lag"] == 0
    assert "partition  position  end  lag" in err and "total" in err

    assert main([*argv, "--max", "10"]) == 0                     # stopped early: the rest is lag
    summary = _summary(capsys.readouterr().err)
    assert summary["kept"] == 10 and summary["lag"] == len(records) - 10, summary["partitions"]
    assert sum(p["end"] for p in summary["partitions"]) == len(records)


def test_subscribing_to_the_input_alerts_topic_is_one_line_and_exit_2(services, unique_name, capsys):
    topic = f"{unique_name}-alerts"
    create_topics(services.bootstrap_servers, [topic], partitions=2)
    produce_files(services.bootstrap_servers, topic, PACKETS)   # real ZTF and Rubin packets, not classified records
    code = main(["subscribe", "--topic", topic, "--bootstrap-servers", services.bootstrap_servers, "--until-end"])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and out == ""
    assert len(lines) == 1, lines
    assert lines[0].startswith("survey-classifier subscribe: error: topic ") and "does not hold classified records" in lines[0]
    assert "difference_alert packets (an input topic?)" in lines[0] and "classified" in lines[0], lines[0]


def _join_group(bootstrap: str, group: str, topic: str, strategy: str) -> Consumer:
    member = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "member-a",
                       "auto.offset.reset": "earliest", "enable.auto.commit": False,
                       "partition.assignment.strategy": strategy, "session.timeout.ms": 6000})
    member.subscribe([topic])
    deadline = time.monotonic() + 60
    while not member.assignment():
        assert time.monotonic() < deadline, "the member got no partitions in 60 s"
        member.poll(0.2)
    return member


def test_status_reads_the_groups_committed_offsets_lag_and_members_from_the_broker(services, unique_name, capsys):
    topic, group = f"{unique_name}-alerts", f"{unique_name}-group"
    create_topics(services.bootstrap_servers, [topic], partitions=2)
    produce_files(services.bootstrap_servers, topic, PACKETS)
    member = _join_group(services.bootstrap_servers, group, topic, services.assignment_strategy)
    try:
        member.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)], asynchronous=False)
        argv = ["status", "--bootstrap-servers", services.bootstrap_servers, "--group", group, "--topics", topic]
        assert main([*argv, "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert main(argv) == 0
        text = capsys.readouterr().out
    finally:
        member.close()
    parts = {p["partition"]: p for p in status["partitions"]}
    assert parts[0]["committed"] == 5 and parts[1]["committed"] == 7
    assert parts[0]["end"] + parts[1]["end"] == len(PACKETS)
    assert status["lag"] == len(PACKETS) - 12 and status["committed_note"] is None
    assert f"total lag: {len(PACKETS) - 12}" in text
    if services.embedded is not None:  # what Tansu does not answer is said, not guessed
        assert status["members"] is None and status["members_note"].startswith("not answered by this broker")
        assert "members: not answered by this broker" in text
    else:
        (m,) = status["members"]
        assert m["client_id"] == "member-a" and m["assignment"] == [f"{topic}[0]", f"{topic}[1]"]
        assert {p["member"] for p in status["partitions"]} == {"member-a"}
