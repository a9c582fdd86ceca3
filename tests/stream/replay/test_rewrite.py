"""--multiply: copies of real packets get unique, decodable, deterministic ids."""
from __future__ import annotations

import pytest

from schemas.decode import decode_message
from stream.replay.rewrite import COPY_ID_BIT, MAX_COPIES, MultiplyError, copy_alert_id, multiply
from stream.replay.sources import SourceMessage
from tests.stream.subscribe.helpers import bundled_messages


def test_every_copy_of_every_bundled_packet_has_a_unique_decodable_id():
    originals = bundled_messages()
    seen: dict[int, tuple[str, int]] = {}
    for message in originals:
        for k, copy in multiply(message, 4):
            alerts = decode_message(copy.value)
            assert len(alerts) == 1
            alert = alerts[0]
            assert alert.alert_id == copy.alert_id
            assert alert.object_id == message.object_id  # same object, same partition
            assert alert.mjd == pytest.approx(message.observed_mjd, abs=1e-6)
            assert copy.alert_id not in seen, (copy.origin, k, seen.get(copy.alert_id))
            seen[copy.alert_id] = (copy.origin, k)
            if k == 0:
                assert copy.value == message.value
            else:
                assert copy.alert_id & COPY_ID_BIT and copy.alert_id > message.alert_id
                assert (copy.alert_id >> 50) & 0xFFF == k
    assert len(seen) == 4 * len(originals)


def test_rule_is_deterministic_across_runs():
    message = bundled_messages()[0]
    first = [c.value for _, c in multiply(message, 3)]
    second = [c.value for _, c in multiply(message, 3)]
    assert first == second


def test_both_id_fields_are_rewritten():
    import io

    import fastavro

    ztf = next(m for m in bundled_messages() if m.survey == "ztf")
    _, copy = list(multiply(ztf, 2))[1]
    record = next(fastavro.reader(io.BytesIO(copy.value)))
    assert record["candid"] == record["candidate"]["candid"] == copy.alert_id


def test_bad_multiply_values_are_refused():
    message: SourceMessage = bundled_messages()[0]
    with pytest.raises(MultiplyError):
        list(multiply(message, 0))
    with pytest.raises(MultiplyError):
        copy_alert_id(1, MAX_COPIES + 1)
    assert copy_alert_id(123, 0) == 123


def test_spliced_copies_are_byte_identical_to_a_full_encoding():
    """Copies re-encode only the changed fields; the result must equal fastavro's full encoding."""
    import hashlib
    import io
    import struct

    import fastavro

    for message in bundled_messages():
        for k, copy in list(multiply(message, 3))[1:]:
            full = io.BytesIO()
            if message.kind == "confluent_wire":
                full.write(b"\x00" + struct.pack(">i", message.wire_schema_id))
                fastavro.schemaless_writer(full, message.writer_schema, copy.record)
            else:
                marker = hashlib.blake2b(str(copy.alert_id).encode(), digest_size=16).digest()
                fastavro.writer(full, message.writer_schema, [copy.record], codec=message.codec, sync_marker=marker)
            assert copy.value == full.getvalue(), (message.origin, k)
