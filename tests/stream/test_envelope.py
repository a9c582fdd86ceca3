"""The pure batch steps: decode outcomes for every message, in-batch and cross-batch dedup."""
from __future__ import annotations

from schemas.decode.limits import DecodeSettings
from stream.envelope import Envelope, decode_values, dedup_candidates
from tests.conftest import SAMPLES


def _env(offset: int) -> Envelope:
    return Envelope("t", 0, offset, 0, None, b"")


def test_decode_values_gives_one_outcome_per_message_with_reasons():
    good = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[0].read_bytes()
    wire = sorted((SAMPLES / "rubin" / "alerce-kafka").glob("*.avro"))[0].read_bytes()
    outcomes, seconds = decode_values([good, None, good[:300], b"\x07abc", wire], DecodeSettings())
    assert len(outcomes) == 5 and seconds > 0
    assert outcomes[0].ok and outcomes[0].items[0].survey == "ztf"
    assert outcomes[1].reason == "empty"
    assert outcomes[2].reason == "truncated_avro"
    assert not outcomes[3].ok and outcomes[3].reason in ("unknown_format", "bad_magic")
    assert outcomes[4].ok and outcomes[4].items[0].survey == "rubin"


def test_dedup_candidates_catches_published_and_in_batch_copies():
    from schemas.decode import decode_message

    alert = decode_message(sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[0].read_bytes())[0]
    other = decode_message(sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[1].read_bytes())[0]
    pairs = [(_env(0), alert), (_env(1), alert), (_env(2), other)]
    fresh, dups = dedup_candidates(pairs, already_published=set())
    assert [e.offset for e, _ in fresh] == [0, 2] and [e.offset for e, _ in dups] == [1]
    fresh, dups = dedup_candidates(pairs, already_published={other.key})
    assert [e.offset for e, _ in fresh] == [0] and [e.offset for e, _ in dups] == [1, 2]
