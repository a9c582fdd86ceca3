"""The HTTP side of schema lookups: a Confluent-compatible registry's ``GET /schemas/ids/{id}``.

``schemas.decode`` stays pure: it takes a fetcher (id -> schema definition); this module builds
one for a registry URL and wraps it in a :class:`~schemas.decode.rubin.SchemaResolver`.
"""
from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.decode.errors import DecodeError, Reason
from schemas.decode.rubin import SchemaRegistryError, SchemaResolver

__all__ = ["registry_fetcher", "resolver_for", "redact_url", "redact_urls_in", "split_credentials", "SchemaLookups",
           "PrefetchedSchemas", "LOOKUP_DEADLINE_S", "MAX_ANSWER_BYTES"]

#: A URL in a text: its scheme and the rest of its token (up to whitespace or a quote).
_URL_IN_TEXT = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>[^\s'\"<>]*)")


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """(user info, the rest) of what follows ``scheme://``.

    The user info runs to the *last* ``@``, so a password holding an unencoded ``/``, ``?``, ``#``
    or ``@`` is still all of it (``urlsplit`` cuts it at the first ``/``, leaving the rest of the
    password in the path). A text before ``@`` that holds ``/``, ``?`` or ``#`` but no ``:`` is
    a path with an ``@`` in it (``http://h/p@x``), not credentials.
    """
    at = rest.rfind("@")
    if at < 0:
        return None, rest
    info = rest[:at]
    if any(c in info for c in "/?#") and ":" not in info:
        return None, rest
    return info, rest[at + 1:]


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, safe for logs and headers."""
    match = _URL_IN_TEXT.match(url)
    if match is None:
        return url
    info, rest = _split_userinfo(url[len(match.group("scheme")):])
    return url if info is None else f"{match.group('scheme')}***@{rest}"


def redact_urls_in(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***`` (for logs, headers)."""
    def one(match: re.Match[str]) -> str:
        info, rest = _split_userinfo(match.group("rest"))
        return match.group(0) if info is None else f"{match.group('scheme')}***@{rest}"
    return _URL_IN_TEXT.sub(one, text)


def split_credentials(url: str) -> tuple[str, str | None]:
    """(``url`` without ``user:password@``, a Basic ``Authorization`` header value or None).

    urllib does not send credentials written in a URL (and a password with ``:``, ``@`` or ``/``
    in it breaks its host parsing, putting the password into the exception text); a header does
    both. Percent-encoded user and password are decoded.
    """
    match = _URL_IN_TEXT.match(url)
    if match is None:
        return url, None
    info, rest = _split_userinfo(url[len(match.group("scheme")):])
    if info is None:
        return url, None
    user, _, password = info.partition(":")
    token = base64.b64encode(f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()).decode("ascii")
    return f"{match.group('scheme')}{rest}", f"Basic {token}"


#: Overall deadline of one registry lookup: connecting, sending, the status line, headers and
#: body together (urllib's timeout bounds each read alone: a registry answering a byte at a time
#: held a lookup for ~20 s). Past it the lookup fails as ours: the service pauses.
LOOKUP_DEADLINE_S = 10.0
#: Largest registry answer read (a Rubin alert schema with every reference resolved is ~120 kB).
#: A 200 answer over it is refused as the message's ``bad_schema``.
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class _Deadline:
    """Shuts a socket down when the deadline passes, failing whatever read is blocked on it."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.expired = False

        def expire() -> None:
            self.expired = True
            try:  # the connection may have handed the socket to its response already: shut it, whoever holds it
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._timer = threading.Timer(seconds, expire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()


def _bounded_get(url: str, headers: dict[str, str], deadline_s: float, max_bytes: int,
                 per_read_s: float = 5.0) -> tuple[int, bytes | None]:
    """(status, body) of ``GET url`` within ``deadline_s`` overall; body None when over ``max_bytes``.

    Raises ``TimeoutError`` past the deadline and ``OSError`` / ``http.client.HTTPException`` for
    a connection that fails (the caller reports them as the registry's fault, without the URL).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: scheme {parts.scheme!r}")
    per_read = max(0.1, min(deadline_s, per_read_s))
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=per_read,
                                                                              context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=per_read)
    started = time.monotonic()
    try:
        connection.connect()
        deadline = _Deadline(connection.sock, max(0.0, deadline_s - (time.monotonic() - started)))
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", path, headers={"Accept": "application/vnd.schemaregistry.v1+json, application/json", **headers})
            response = connection.getresponse()
            if response.status != 200:
                return response.status, b""
            chunks, size = [], 0
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    return 200, None
                chunks.append(chunk)
            if deadline.expired or response.length:  # cut short by the deadline, or the connection ended early
                raise http.client.IncompleteRead(b"".join(chunks), response.length)
            return 200, b"".join(chunks)
        except (OSError, http.client.HTTPException):
            if deadline.expired:
                raise TimeoutError(f"no complete answer within {deadline_s:g} s") from None
            raise
        finally:
            deadline.cancel()
    finally:
        connection.close()


def registry_fetcher(registry_url: str, *, timeout_s: float = 5.0, deadline_s: float = LOOKUP_DEADLINE_S,
                     max_bytes: int = MAX_ANSWER_BYTES):
    """A fetcher for :class:`SchemaResolver`: schema id -> definition from ``registry_url``.

    Each lookup has one overall deadline (``deadline_s``, never more than ``timeout_s`` per read)
    and reads at most ``max_bytes``. Whose fault a failure is decides what becomes of the message:

    * ours, :class:`SchemaRegistryError` (the service pauses; its text never holds the
      credentials): unreachable, refused, past the deadline, 401/403, a 5xx, a misconfigured URL,
      an answer that is not a registry's (not JSON, no ``schema``);
    * the message's, :class:`DecodeError`: a 404 (an id nobody registered, ``unknown_schema_id``);
      a 200 whose schema is not Avro (``schemaType`` PROTOBUF or JSON, text that is not JSON),
      is nested too deep to read, or is over ``max_bytes`` (``bad_schema``).
    """
    base, authorization = split_credentials(registry_url.rstrip("/"))
    shown = redact_url(registry_url.rstrip("/"))

    def fetch(schema_id: int) -> Any:
        url = f"{base}/schemas/ids/{schema_id}"
        where = f"{shown}/schemas/ids/{schema_id}"
        try:
            status, body = _bounded_get(url, {"Authorization": authorization} if authorization else {}, deadline_s, max_bytes,
                                        per_read_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure to ask is ours; the text may hold the URL
            raise SchemaRegistryError(f"{where}: {type(exc).__name__}") from None
        if status == 404:
            raise DecodeError(Reason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id} not in {shown}")
        if status != 200:
            raise SchemaRegistryError(f"{where}: HTTP {status}")
        if body is None:
            raise DecodeError(Reason.BAD_SCHEMA, f"schema id {schema_id}: the registry's answer is over {max_bytes} bytes")
        try:
            answer = json.loads(body)
        except RecursionError:
            raise DecodeError(Reason.BAD_SCHEMA, f"schema id {schema_id}: the registry's answer is nested too deep") from None
        except ValueError as exc:
            raise SchemaRegistryError(f"{where}: unusable answer: {type(exc).__name__}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("schema"), str):
            raise SchemaRegistryError(f"{where}: unusable answer: no schema text")
        kind = answer.get("schemaType", "AVRO")
        if kind != "AVRO":
            raise DecodeError(Reason.BAD_SCHEMA, f"schema id {schema_id} is a {str(kind)[:20]} schema, not Avro")
        try:
            return json.loads(answer["schema"])
        except RecursionError:
            raise DecodeError(Reason.BAD_SCHEMA, f"schema id {schema_id}: the schema is nested too deep") from None
        except ValueError as exc:
            raise DecodeError(Reason.BAD_SCHEMA, f"schema id {schema_id}: the schema is not Avro JSON ({type(exc).__name__})") from None

    return fetch


def resolver_for(registry_url: str, *, timeout_s: float = 5.0) -> SchemaResolver:
    """The resolver for a configured registry URL; empty: the schemas shipped in lsst-alert-packet."""
    if not registry_url:
        return SchemaResolver()
    return SchemaResolver(registry_fetcher(registry_url, timeout_s=timeout_s), source=redact_url(registry_url))


# ------------------------------------------------------------------ lookups in the supervisor
@dataclass(frozen=True)
class PrefetchedSchemas:
    """The registry's answers for one batch's schema ids, looked up by the service (the supervisor)
    and handed to the decode workers with the batch: a worker never does HTTP (a slow registry
    then held it until ``decode.timeout_s`` and dead-lettered good alerts as ``decode_timeout``).

    ``answers`` maps a schema id to its definition, or to ``(reason, detail)`` when the answer
    refuses the message (``bad_schema``, ``unknown_schema_id``).
    """

    source: str
    answers: dict[int, Any] = field(default_factory=dict)

    def resolver(self) -> SchemaResolver:
        """This process's resolver for :attr:`source` (its parsed schemas outlive a batch), fed these answers."""
        resolver = _PREFETCH_RESOLVERS.get(self.source)
        if resolver is None:
            resolver = _PREFETCH_RESOLVERS[self.source] = SchemaResolver(_Answers(), source=self.source)
        resolver.fetch.answers.update(self.answers)  # type: ignore[union-attr]
        return resolver


class _Answers:
    """A fetcher over prefetched answers (ids the supervisor did not look up are unknown)."""

    def __init__(self) -> None:
        self.answers: dict[int, Any] = {}

    def __call__(self, schema_id: int) -> Any:
        if schema_id not in self.answers:
            raise DecodeError(Reason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id} was not looked up")
        answer = self.answers[schema_id]
        if isinstance(answer, _Refusal):
            raise DecodeError(Reason(answer.reason), answer.detail)
        return answer


@dataclass(frozen=True)
class _Refusal:
    reason: str
    detail: str


_PREFETCH_RESOLVERS: dict[str, SchemaResolver] = {}


class SchemaLookups:
    """Registry lookups for the service, in its own process: one cache for every batch and worker.

    :meth:`prepare` looks up each schema id of a batch's Confluent-wire values that is not
    cached yet (exposure ids are local, never asked) and returns the answers for the batch.
    A definition is checked here as a decoder would (:func:`check_schema_is_safe`, fastavro's
    parser), so an answer that cannot be an Avro writer schema is refused once, as ``bad_schema``,
    and that verdict is cached; so is every good definition. A 404 is not cached (the id may be
    registered later). Our faults raise :class:`SchemaRegistryError`: the caller pauses.
    """

    def __init__(self, registry_url: str, *, deadline_s: float = LOOKUP_DEADLINE_S, max_bytes: int = MAX_ANSWER_BYTES,
                 timeout_s: float = 5.0) -> None:
        self.source = redact_url(registry_url)
        self._fetch = registry_fetcher(registry_url, timeout_s=timeout_s, deadline_s=deadline_s, max_bytes=max_bytes) \
            if registry_url else None
        self._cache: dict[int, Any] = {}
        self.lookups = 0

    def prepare(self, values: Iterable[bytes | None]) -> PrefetchedSchemas | str:
        """The answers for the schema ids of ``values`` (``""``, no registry: the shipped schemas)."""
        if self._fetch is None:
            return ""
        from schemas.decode.exposure import EXPOSURE_ID_OFFSET

        ids: set[int] = set()
        for value in values:
            if value and len(value) >= 5 and value[0] == 0:
                schema_id = int.from_bytes(value[1:5], "big", signed=True)
                if schema_id < EXPOSURE_ID_OFFSET:
                    ids.add(schema_id)
        answers: dict[int, Any] = {}
        for schema_id in sorted(ids):
            cached = self._cache.get(schema_id)
            if cached is None:
                cached = self._look_up(schema_id)
            answers[schema_id] = cached
        return PrefetchedSchemas(self.source, answers)

    def _look_up(self, schema_id: int) -> Any:
        import fastavro

        from schemas.decode.avro import check_schema_is_safe

        assert self._fetch is not None
        self.lookups += 1
        try:
            definition = self._fetch(schema_id)  # SchemaRegistryError (ours) propagates
        except DecodeError as exc:
            refusal = _Refusal(exc.reason.value, exc.detail)
            if exc.reason is Reason.BAD_SCHEMA:
                self._cache[schema_id] = refusal
            return refusal
        try:
            check_schema_is_safe(definition)
            fastavro.parse_schema(definition)
        except DecodeError as exc:
            refusal = _Refusal(Reason.BAD_SCHEMA.value, f"schema id {schema_id}: {exc.detail}")
        except Exception as exc:  # noqa: BLE001 - any parser failure (RecursionError included): not a usable Avro schema
            refusal = _Refusal(Reason.BAD_SCHEMA.value, f"schema id {schema_id} is not an Avro schema: {type(exc).__name__}: {exc}"[:500])
        else:
            self._cache[schema_id] = definition
            return definition
        self._cache[schema_id] = refusal
        return refusal
