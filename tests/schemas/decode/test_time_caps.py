"""Time caps per message, not per block or card (issue #23, case 6).

* A message of many small bzip2 blocks, each inflating to just under the block cap, made a
  worker inflate all of them (a 78 kB container of 1,000 such blocks held it for its whole
  timeout): the blocks of one message now share one cap, ``decode.max_inflated_message_bytes``.
* FITS ``CONTINUE`` cards were joined by re-building the string at each card, quadratic in their
  number (209,000 of them in a 26 kB gzipped cutout kept ``inspect`` busy for minutes): now the
  pieces are joined once, with the same result.
"""
from __future__ import annotations

import bz2
import copy
import io
import random
import subprocess
import sys
import time

import fastavro

from schemas.decode import decode_message
from schemas.decode.fits import parse_header
from schemas.decode.limits import DecodeSettings
from tests.conftest import REPO
from tests.hostile.corpus import container
from tests.stream.hostile_messages import _first_record, real_ztf_packets


def _ztf_bzip2_container(blocks: int, stamp_bytes: int) -> bytes:
    """A real ZTF alert schema; ``blocks`` bzip2 blocks, each one record whose science stamp is
    ``stamp_bytes`` of zeros (each block compresses to a few hundred bytes)."""
    schema, record = _first_record(real_ztf_packets(1)[0])
    record = copy.deepcopy(record)
    record["cutoutScience"] = dict(record["cutoutScience"], stampData=bytes(stamp_bytes))
    datum = io.BytesIO()
    fastavro.schemaless_writer(datum, fastavro.parse_schema(schema), record)
    block = bz2.compress(datum.getvalue(), 9)
    return container(schema, [(1, block)] * blocks, codec="bzip2")


def test_the_blocks_of_one_message_share_one_inflation_cap():
    from schemas.decode.avro import read_container

    value = _ztf_bzip2_container(blocks=30, stamp_bytes=8 << 20)  # 240 MB inflated in all, 8 MB a block
    assert len(value) < DecodeSettings().max_message_bytes
    cap = DecodeSettings().max_inflated_message_bytes
    t0 = time.perf_counter()
    _, records = read_container(value, max_total_bytes=cap)
    took = time.perf_counter() - t0
    last = records[-1]
    print(f"\n{len(value)} bytes, 30 bzip2 blocks of 8 MB: stopped after {len(records) - 1} blocks in {took:.2f} s ({last})")
    assert last.reason.value == "too_large" and "max_inflated_message_bytes" in last.detail
    assert len(records) - 1 <= cap // (8 << 20)
    # the message is refused, whatever its first record's own fault
    from schemas.decode import DecodeError
    try:
        decode_message(value)
    except DecodeError:
        pass
    else:
        raise AssertionError("decoded")


def _reference_join(cards: list[str]) -> str:
    """The old quadratic join, as the reference for the result."""
    value = cards[0]
    for more in cards[1:]:
        if value.endswith("&"):
            value = value[:-1] + more
    return value


def _header(first: str, continued: list[str]) -> bytes:
    def card(text: str) -> bytes:
        return text.ljust(80).encode()
    body = card("SIMPLE  =                    T") + card(f"LONGSTRN= '{first}'")
    body += b"".join(card(f"CONTINUE  '{piece}'") for piece in continued) + card("END")
    return body + b" " * (-len(body) % 2880)


def test_continue_cards_join_as_before():
    rng = random.Random(7)
    for _ in range(300):
        pieces = [rng.choice(["", "&", "&&", "ab", "ab&", "x&&", "q"]) for _ in range(rng.randint(1, 8))]
        cards, _ = parse_header(_header(pieces[0], pieces[1:]))
        assert cards["LONGSTRN"] == _reference_join(pieces), pieces


def _parse_seconds(n: int) -> float:
    """The best of three parses of a header with ``n`` CONTINUE cards, in a fresh process."""
    code = ("import time; from schemas.decode.fits import parse_header; "
            "from tests.schemas.decode.test_time_caps import _header; "
            f"h = _header('a&', ['bc&'] * {n} + ['end']); best = 1e9\n"
            "for _ in range(3):\n"
            "    t0 = time.perf_counter(); cards, _ = parse_header(h); best = min(best, time.perf_counter() - t0)\n"
            f"assert cards['LONGSTRN'] == 'a' + 'bc' * {n} + 'end'; print(f'{{best:.4f}}')")
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{n} CONTINUE cards took more than 120 s") from None
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.strip())


def test_two_hundred_thousand_continue_cards_parse_in_linear_time():
    small, big = _parse_seconds(26_125), _parse_seconds(209_000)
    print(f"\nCONTINUE cards: 26,125 in {small:.3f} s, 209,000 in {big:.3f} s (x{big / small:.1f} for x8 the cards)")
    assert big / small < 25, "linear: eight times the cards, about eight times the time (quadratic: about 64; measured 43 before)"
    assert big < 2.0
