"""Subscribe outputs and filters hold against hostile values: long ids, formula cells, deep filters."""
from __future__ import annotations

import csv
import dataclasses

import pytest

from stream.subscribe.filters import MAX_WHERE_CHARS, MAX_WHERE_DEPTH, FilterError, parse_where
from stream.subscribe.output import PNG_STEM_MAX, csv_safe, open_writer, png_name, render_triplet
from stream.subscribe.reader import ClassifiedRecord
from tests.stream.subscribe.helpers import bundled_messages, classified_records


@pytest.fixture(scope="module")
def typed() -> list[ClassifiedRecord]:
    return [ClassifiedRecord.from_dict(r, topic="classified", partition=0, offset=i, timestamp_ms=1_700_000_000_500 + i)
            for i, r in enumerate(classified_records())]


def test_where_caps_length_and_depth_with_a_clear_error(typed):
    record = typed[0].as_dict()
    ok = parse_where("(" * 10 + "real_bogus >= 0" + ")" * 10)
    assert ok(record) is True
    with pytest.raises(FilterError, match="characters long"):
        parse_where("real_bogus > 0 or " * 200 + "true")
    with pytest.raises(FilterError, match="nested"):
        parse_where("not " * 450 + "untrained")
    with pytest.raises(FilterError, match="nested"):
        parse_where("not " * (MAX_WHERE_DEPTH + 1) + "untrained")
    deep = "(" * 250 + "real_bogus > 0" + ")" * 250  # past the parser's own parenthesis limit
    assert len(deep) < MAX_WHERE_CHARS
    with pytest.raises(FilterError):
        parse_where(deep)
    assert parse_where("(" * 150 + "real_bogus >= 0" + ")" * 150)(record) is True  # parentheses alone nest nothing
    # just under the cap: compiles and evaluates without RecursionError
    fine = parse_where("not " * (MAX_WHERE_DEPTH - 2) + "untrained")
    assert fine(record) in (True, False)


def test_long_and_odd_object_ids_make_short_safe_unique_png_names(tmp_path, typed):
    base = typed[0]
    long_a = dataclasses.replace(base, object_id="Z" * 300, alert_id="1")
    long_b = dataclasses.replace(base, object_id="Z" * 300, alert_id="2")
    odd = dataclasses.replace(base, object_id="../../etc/passwd", alert_id=".hidden")
    unicode_id = dataclasses.replace(base, object_id="星" * 200, alert_id="3")
    names = [png_name(r) for r in (long_a, long_b, odd, unicode_id)]
    for name in names:
        assert len(name.encode()) <= PNG_STEM_MAX + 4 and "/" not in name and not name.startswith(".")
        assert name.isascii()
    assert len(set(names)) == 4
    alert = __import__("schemas.decode", fromlist=["decode_message"]).decode_message(bundled_messages()[0].value)[0]
    path = render_triplet(alert, long_a, tmp_path / png_name(long_a))  # a 300-character id no longer aborts
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_csv_cells_cannot_run_as_formulas(tmp_path, typed):
    assert csv_safe("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    for start in ("+", "-", "@", "\t", "\r"):
        assert csv_safe(start + "cmd|' /C calc'!A0").startswith("'")
    assert csv_safe("-12.5") == "-12.5" and csv_safe("-1726958725155000") == "-1726958725155000"
    assert csv_safe(-3.25) == -3.25 and csv_safe("ZTF21abc") == "ZTF21abc"
    hostile = dataclasses.replace(typed[0], object_id="=1+2", alert_id="@SUM(A1:A9)")
    path = tmp_path / "out.csv"
    with open_writer(path) as writer:
        writer.write(hostile)
        writer.write(typed[1])
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["object_id"] == "'=1+2" and rows[0]["alert_id"] == "'@SUM(A1:A9)"
    assert rows[1]["object_id"] == str(typed[1].object_id)
    assert float(rows[0]["dec [deg]"]) == pytest.approx(typed[0].dec)
