"""The HTTP side of schema lookups: a Confluent-compatible registry's ``GET /schemas/ids/{id}``.

``schemas.decode`` stays pure: it takes a fetcher (id -> schema definition); this module builds
one for a registry URL and wraps it in a :class:`~schemas.decode.rubin.SchemaResolver`.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from schemas.decode.errors import DecodeError, Reason
from schemas.decode.rubin import SchemaRegistryError, SchemaResolver

__all__ = ["registry_fetcher", "resolver_for", "redact_url"]


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` removed, safe for logs and headers."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def registry_fetcher(registry_url: str, *, timeout_s: float = 5.0):
    """A fetcher for :class:`SchemaResolver`: schema id -> definition from ``registry_url``."""
    base = registry_url.rstrip("/")
    shown = redact_url(base)

    def fetch(schema_id: int) -> Any:
        url = f"{base}/schemas/ids/{schema_id}"
        where = f"{shown}/schemas/ids/{schema_id}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise DecodeError(Reason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id} not in {shown}") from None
            raise SchemaRegistryError(f"{where}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SchemaRegistryError(f"{where}: {type(exc).__name__}") from None
        try:
            return json.loads(body["schema"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaRegistryError(f"{where}: unusable answer: {type(exc).__name__}") from None

    return fetch


def resolver_for(registry_url: str, *, timeout_s: float = 5.0) -> SchemaResolver:
    """The resolver for a configured registry URL; empty: the schemas shipped in lsst-alert-packet."""
    if not registry_url:
        return SchemaResolver()
    return SchemaResolver(registry_fetcher(registry_url, timeout_s=timeout_s), source=redact_url(registry_url))
