"""The HTTP side of schema lookups: a Confluent-compatible registry's ``GET /schemas/ids/{id}``.

``schemas.decode`` stays pure: it takes a fetcher (id -> schema definition); this module builds
one for a registry URL and wraps it in a :class:`~schemas.decode.rubin.SchemaResolver`.
"""
from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from schemas.decode.errors import DecodeError, Reason
from schemas.decode.rubin import SchemaRegistryError, SchemaResolver

__all__ = ["registry_fetcher", "resolver_for", "redact_url", "redact_urls_in", "split_credentials"]

#: ``scheme://user:password@`` anywhere in a text (an exception message, a log line).
_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` removed, safe for logs and headers."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def redact_urls_in(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***`` (for logs, headers)."""
    return _CREDENTIALS_IN_URL.sub(lambda m: f"{m.group('scheme')}***@", text)


def split_credentials(url: str) -> tuple[str, str | None]:
    """(``url`` without ``user:password@``, a Basic ``Authorization`` header value or None).

    urllib does not send credentials written in a URL (and a password with ``:`` or ``@`` in it
    breaks its host parsing, putting the password into the exception text); a header does both.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return redact_url(url).replace("***@", "", 1), f"Basic {token}"


def registry_fetcher(registry_url: str, *, timeout_s: float = 5.0):
    """A fetcher for :class:`SchemaResolver`: schema id -> definition from ``registry_url``.

    A 404 is the message's fault (an id nobody registered): :class:`DecodeError`. Anything else
    (unreachable, refused, a 5xx, a misconfigured URL, an answer that is not a schema) is ours:
    :class:`SchemaRegistryError`, whose text never holds the credentials.
    """
    base, authorization = split_credentials(registry_url.rstrip("/"))
    shown = redact_url(registry_url.rstrip("/"))

    def fetch(schema_id: int) -> Any:
        url = f"{base}/schemas/ids/{schema_id}"
        where = f"{shown}/schemas/ids/{schema_id}"
        try:
            request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise DecodeError(Reason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id} not in {shown}") from None
            raise SchemaRegistryError(f"{where}: HTTP {exc.code}") from None
        except Exception as exc:  # noqa: BLE001 - any failure to ask is ours; the text may hold the URL
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
