"""The embedded broker binary is checked against its known sha256 before it runs."""
from __future__ import annotations

import hashlib

import pytest

from stream.stack import StackError, tansu_binary, verify_tansu


def test_the_installed_tansu_binary_matches_its_known_checksum(monkeypatch):
    monkeypatch.delenv("TANSU_BIN", raising=False)
    monkeypatch.delenv("TANSU_SHA256", raising=False)
    path = tansu_binary()
    assert path.is_file()


def test_a_swapped_binary_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    fake = tmp_path / "tansu"
    fake.write_bytes(b"#!/bin/sh\necho pwned\n")
    good = hashlib.sha256(fake.read_bytes()).hexdigest()
    verify_tansu(fake, good)  # the right sum passes
    fake.write_bytes(b"#!/bin/sh\necho pwned again\n")
    with pytest.raises(StackError, match="refusing to run it"):
        verify_tansu(fake, good)
    monkeypatch.setenv("TANSU_BIN", str(fake))
    monkeypatch.delenv("TANSU_SHA256", raising=False)
    with pytest.raises(StackError, match="without TANSU_SHA256"):
        tansu_binary()
    monkeypatch.setenv("TANSU_SHA256", good)
    with pytest.raises(StackError, match="expected"):
        tansu_binary()


def test_an_unknown_expected_sum_refuses_the_shipped_binary(monkeypatch):
    monkeypatch.delenv("TANSU_BIN", raising=False)
    monkeypatch.setenv("TANSU_SHA256", "0" * 64)
    with pytest.raises(StackError, match="sha256"):
        tansu_binary()
