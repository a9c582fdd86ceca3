"""Writers read back (JSONL, CSV, Parquet, Avro), PNG triplets from real alerts, and the command."""
from __future__ import annotations

import argparse
import csv
import json

import fastavro
import pytest

from stream.subscribe.output import CSV_COLUMNS, OutputError, TableWriter, open_writer, png_name, render_triplet
from stream.subscribe.reader import ClassifiedRecord
from tests.stream.subscribe.helpers import bundled_messages, classified_records


@pytest.fixture(scope="module")
def typed() -> list[ClassifiedRecord]:
    return [ClassifiedRecord.from_dict(r, topic="classified", partition=0, offset=i, timestamp_ms=1_700_000_000_500 + i)
            for i, r in enumerate(classified_records())]


def _write(path, records):
    with open_writer(path) as writer:
        for r in records:
            writer.write(r)
    return path


def test_jsonl_round_trip(tmp_path, typed):
    path = _write(tmp_path / "out.jsonl", typed)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [json.loads(json.dumps(r.as_dict())) for r in typed]
    assert [ClassifiedRecord.from_dict(row, topic=row["topic"], partition=row["partition"], offset=row["offset"],
                                       timestamp_ms=row["timestamp_ms"]) for row in rows] == typed


def test_csv_round_trip(tmp_path, typed):
    from stream.subscribe.units import csv_header_name

    path = _write(tmp_path / "out.csv", typed)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [csv_header_name(c) for c in CSV_COLUMNS] and len(rows) == len(typed)
    assert "ra [deg]" in rows[0] and "mjd [d (MJD, TAI)]" in rows[0] and "magpsf [mag (AB)]" in rows[0]
    for row, rec in zip(rows, typed):
        assert row["alert_id"] == rec.alert_id and row["survey"] == rec.survey
        assert float(row["real_bogus [probability]"]) == pytest.approx(rec.real_bogus)
        assert row["top_class"] == rec.top_class
        assert not any(cell.startswith(("{", "[")) for cell in row.values())  # flat: no JSON in cells
        scores = {k.split(".", 1)[1].split(" ")[0]: float(v) for k, v in row.items() if k.startswith("class_scores.")
                  and not k.startswith("class_scores.other") and v}
        scores.update((pair.split("=")[0], float(pair.split("=")[1])) for pair in row["class_scores.other"].split(";") if pair)
        assert scores == pytest.approx(dict(rec.class_scores))
        for name, value in rec.survey_scores.items():
            assert float(row[f"survey_scores.{name} [probability]"]) == pytest.approx(value)
        assert [m.split(":")[0] for m in row["models"].split(";")] == [m.name for m in rec.models]
        if rec.survey == "ztf":
            assert float(row["magpsf [mag (AB)]"]) == pytest.approx(rec.magpsf) and row["fid"] == str(rec.fid)
        quality = {k.split(".", 1)[1].split(" ")[0]: v for k, v in row.items() if k.startswith("quality.")}
        assert quality["rule"] == rec.quality["rule"] and quality["good"] == ("" if rec.quality["good"] is None
                                                                            else str(rec.quality["good"]))


def test_parquet_round_trip(tmp_path, typed):
    import pyarrow.parquet as pq

    path = _write(tmp_path / "out.parquet", typed)
    table = pq.read_table(path)
    assert table.num_rows == len(typed)
    rows = table.to_pylist()
    for row, rec in zip(rows, typed):
        assert row["alert_id"] == rec.alert_id
        assert row["real_bogus"] == pytest.approx(rec.real_bogus)
        assert dict(row["class_scores"]) == pytest.approx(dict(rec.class_scores))
        assert row["models"][0]["name"] == "realbogus" and dict(row["models"][0]["scores"])["real"] == pytest.approx(rec.real_bogus)
        assert row["untrained"] is True and row["offset"] == rec.offset
        assert row["mjd"] == pytest.approx(rec.mjd) and row["candid"] == rec.candid
        assert row["quality"] == rec.quality and row["real_bogus_model"] == rec.real_bogus_model == "realbogus"
    assert table.schema.field("ra").metadata[b"unit"] == b"deg"
    assert b"TAI" in table.schema.field("mjd").metadata[b"doc"] and table.schema.field("psf_flux").metadata[b"unit"] == b"nJy"


def test_avro_dump_round_trip(tmp_path, typed):
    from schemas.classified_record import decode_classified, encode_classified

    path = _write(tmp_path / "out.avro", typed)
    with path.open("rb") as fh:
        back = list(fastavro.reader(fh))
    assert [decode_classified(encode_classified(r)) for r in back] == classified_records()


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(OutputError):
        open_writer(tmp_path / "out.xlsx")


def test_table_lines(typed):
    import io

    out = io.StringIO()
    writer = TableWriter(out, header_every=50)
    for r in typed[:3]:
        writer.write(r)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["survey", "alert_id", "object_id"]
    assert len(lines) == 4 and typed[1].alert_id in lines[2]


def test_table_never_cuts_a_value(typed):
    """Rubin's reliability shows with its value ("rel 0.49"), not cut to "reliabili"; long names push right."""
    import io

    rubin = [r for r in typed if r.survey == "rubin"]
    out = io.StringIO()
    writer = TableWriter(out)
    for r in rubin:
        writer.write(r)
    for line, r in zip(out.getvalue().splitlines()[1:], rubin):
        assert f"rel {r.survey_scores['reliability']:.2f}" in line and r.object_id in line and r.alert_id in line
        assert line.split()[-1] == ",".join(m.name + ("" if m.trained else "*") for m in r.models)
    long_id = TableWriter(io.StringIO())._line(["ztf", "1" * 30, "ZTF" + "x" * 40])
    assert "1" * 30 in long_id and "ZTF" + "x" * 40 in long_id


def test_table_never_prints_escape_sequences_from_a_packet(typed):
    """#23 (Low): an object_id carrying an OSC 52 clipboard write (20 characters) or a CSI
    sequence reaches the terminal as ``?``, never as an escape sequence."""
    import dataclasses
    import io

    hostile = "\x1b]52;c;aGk=\x07\x1b[2J\x9b"
    out = io.StringIO()
    TableWriter(out).write(dataclasses.replace(typed[0], object_id=hostile))
    line = out.getvalue().splitlines()[1]
    assert not any(ord(ch) < 0x20 or 0x7f <= ord(ch) < 0xa0 for ch in line) and "?]52;c;aGk=?" in line
    # every cell goes through the same filter: the band, also read from the packet, and a
    # right-to-left override (a format character, not printable) that would reorder the line
    out = io.StringIO()
    TableWriter(out).write(dataclasses.replace(typed[0], band="\x1b[31mg", object_id="ZTF\u202e21abc"))
    line = out.getvalue().splitlines()[1]
    assert "\x1b" not in line and "\u202e" not in line and "?[31mg" in line and "ZTF?21abc" in line


def test_png_triplet_of_real_alerts(tmp_path, typed):
    import matplotlib.image as mpimg

    from schemas.decode import decode_message

    messages = bundled_messages()
    for index in (0, len(messages) - 1):  # a Rubin and a ZTF alert
        alert = decode_message(messages[index].value)[0]
        record = typed[index]
        path = render_triplet(alert, record, tmp_path / png_name(record))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = mpimg.imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 600
        assert image.std() > 0.01  # something was drawn


@pytest.mark.integration
def test_subscribe_command_files_pngs_and_replayable_dump(services, unique_name, tmp_path, capsys):
    """Real alerts on an alerts topic, records pointing at them; subscribe writes Parquet and PNGs;
    its JSONL dump replays back onto a new topic and reads back equal."""
    from confluent_kafka import Producer

    from schemas.classified_record import encode_classified
    from stream.commands import subscribe as command
    from stream.replay.publish import replay
    from stream.stack import create_topics
    from stream.subscribe import subscribe

    bootstrap = services.bootstrap_servers
    alerts, classified, again = f"{unique_name}-alerts", f"{unique_name}-classified", f"{unique_name}-again"
    create_topics(bootstrap, [alerts, classified], partitions=1)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for message in bundled_messages():
        producer.produce(alerts, message.value, key=message.object_id.encode())
    assert producer.flush(30) == 0
    records = classified_records(source_topic=alerts, offsets=[(0, i) for i in range(len(bundled_messages()))])
    for r in records:
        producer.produce(classified, encode_classified(r), key=r["object_id"].encode())
    assert producer.flush(30) == 0

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    pngs = tmp_path / "png"
    args = parser.parse_args(["subscribe", "--topic", classified, "--bootstrap-servers", bootstrap, "--until-end",
                              "--min-rb", "0.9", "--output", str(tmp_path / "kept.parquet"), "--png-dir", str(pngs), "--quiet"])
    assert args.func(args) == 0
    expected = [r for r in records if r["real_bogus"] >= 0.9]
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["kept"] == len(expected) and summary["read"] == len(records)
    assert summary["pngs"] == len(expected) and summary["png_failures"] == 0
    import pyarrow.parquet as pq
    assert sorted(pq.read_table(tmp_path / "kept.parquet").column("alert_id").to_pylist()) == sorted(r["alert_id"] for r in expected)
    assert sorted(p.name for p in pngs.glob("*.png")) == sorted(
        png_name(ClassifiedRecord.from_dict(r)) for r in expected)

    dump = tmp_path / "dump.jsonl"
    args = parser.parse_args(["subscribe", "--topic", classified, "--bootstrap-servers", bootstrap, "--until-end",
                              "--where", "survey == 'rubin'", "--output", str(dump), "--quiet"])
    assert args.func(args) == 0
    rubin = [r for r in records if r["survey"] == "rubin"]
    assert len(dump.read_text().splitlines()) == len(rubin)
    summary = replay(dump, again, bootstrap_servers=bootstrap, progress=False)
    assert summary.sent == len(rubin) and summary.unreadable == []
    assert sorted((r.alert_id, r.real_bogus) for r in subscribe(bootstrap, again)) == sorted(
        (r["alert_id"], r["real_bogus"]) for r in rubin)
