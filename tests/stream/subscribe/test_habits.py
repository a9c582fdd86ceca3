"""fink-client habits of ``subscribe``: list topics, dump the schema, resume a consumer group,
save the original packets of kept alerts, stop after --png-max PNGs, refuse unknown names."""
from __future__ import annotations

import argparse
import json

import fastavro
import pytest
from confluent_kafka import Producer

from schemas.classified_record import encode_classified
from schemas.decode import decode_message
from stream.stack import create_topics
from stream.subscribe.reader import ClassifiedReader, list_topics
from tests.stream.subscribe.helpers import bundled_messages, classified_records


def _command(*argv: str) -> tuple[int, argparse.Namespace]:
    from stream.commands import subscribe as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["subscribe", *argv])
    return args.func(args), args


def test_dump_schema_prints_the_latest_classified_schema(capsys) -> None:
    code, _ = _command("--dump-schema")
    schema = json.loads(capsys.readouterr().out)
    assert code == 0 and schema["name"] == "classified"
    fastavro.parse_schema(schema)


@pytest.mark.parametrize("argv,needle", [(("--survey", "lsst"), "known: ztf, rubin, exposure"),
                                         (("--class", "galxy"), "known: acai.bogus"),
                                         (("--class", "hosted"), "grouped per model: acai.hosted")])
def test_unknown_survey_or_class_refused_with_the_known_ones(argv, needle, capsys) -> None:
    from stream.cli import main

    code = main(["subscribe", "--bootstrap-servers", "127.0.0.1:1", *argv])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.startswith("survey-classifier subscribe: error: ")


@pytest.fixture
def alert_and_classified_topics(services, unique_name):
    """Real alerts on an alerts topic and one classified record per alert pointing at it."""
    bootstrap = services.bootstrap_servers
    alerts, classified = f"{unique_name}-alerts", f"{unique_name}-classified"
    create_topics(bootstrap, [alerts, classified], partitions=1)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    messages = bundled_messages()
    for message in messages:
        producer.produce(alerts, message.value, key=message.object_id.encode())
    records = classified_records(source_topic=alerts, offsets=[(0, i) for i in range(len(messages))])
    for r in records:
        producer.produce(classified, encode_classified(r), key=r["object_id"].encode())
    assert producer.flush(30) == 0
    return alerts, classified, records, messages


@pytest.mark.integration
def test_list_topics_names_them_with_partitions(services, alert_and_classified_topics, capsys) -> None:
    alerts, classified, _, _ = alert_and_classified_topics
    topics = list_topics(services.bootstrap_servers)
    assert topics[alerts] == 1 and topics[classified] == 1
    code, _ = _command("--bootstrap-servers", services.bootstrap_servers, "--list-topics")
    out = capsys.readouterr().out
    assert code == 0 and any(line.split() == [classified, "1"] for line in out.splitlines())


@pytest.mark.integration
def test_group_resumes_from_committed_offsets(services, unique_name, alert_and_classified_topics) -> None:
    _, classified, records, _ = alert_and_classified_topics
    group = f"{unique_name}-reader"
    with ClassifiedReader(services.bootstrap_servers, classified, group_id=group, max_records=30) as reader:
        first = [r.offset for r in reader]
    with ClassifiedReader(services.bootstrap_servers, classified, group_id=group) as reader:
        rest = [r.offset for r in reader]
    assert first == list(range(30)) and rest == list(range(30, len(records)))  # no gap, no repeat
    with ClassifiedReader(services.bootstrap_servers, classified, group_id=group) as reader:
        assert list(reader) == []  # the group is at the end


@pytest.mark.integration
def test_save_alerts_writes_the_original_packets(services, alert_and_classified_topics, tmp_path, capsys) -> None:
    _, classified, records, messages = alert_and_classified_topics
    folder = tmp_path / "originals"
    code, _ = _command("--topic", classified, "--bootstrap-servers", services.bootstrap_servers, "--until-end",
                       "--min-real-bogus", "0.9", "--save-alerts", str(folder), "--quiet")
    assert code == 0
    kept = [(i, r) for i, r in enumerate(records) if r["real_bogus"] >= 0.9]
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["alerts_saved"] == len(kept) and summary["alerts_not_saved"] == 0
    saved = {p.read_bytes() for p in folder.iterdir()}
    assert saved == {messages[i].value for i, _ in kept}  # byte for byte what the survey sent
    for packet in saved:
        assert decode_message(packet)


@pytest.mark.integration
def test_png_max_stops_the_subscription(services, alert_and_classified_topics, tmp_path, capsys) -> None:
    _, classified, records, _ = alert_and_classified_topics
    code, _ = _command("--topic", classified, "--bootstrap-servers", services.bootstrap_servers,
                       "--png-dir", str(tmp_path / "png"), "--png-max", "3", "--quiet", "--survey", "ztf")
    assert code == 0  # without --until-end it would follow the topic forever; --png-max ends it
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["pngs"] == 3 and len(list((tmp_path / "png").glob("*.png"))) == 3
    assert summary["kept"] < len(records)
