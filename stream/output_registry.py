"""Registering the classified schema with a Confluent-compatible schema registry, so any
Kafka client can read the classified topic.

Stock Confluent Avro deserializers (Java, Go, kafkajs, Spark's ``from_avro``, Python's
``AvroDeserializer``) read the schema id in a record's 5-byte header and ask a registry for it.
Without a registry (``kafka.output_schema_registry_url`` empty, the default) records carry the
fixed ids ``100 * major + minor`` that our own readers (``subscribe``, ``stream.subscribe``)
know. With one, the service registers the schema it writes before it publishes anything:

* subject ``<topic>-value`` (TopicNameStrategy, default) or the record's full name
  ``survey_classifier.classified`` (RecordNameStrategy: ``kafka.output_subject_strategy =
  "record"``), once per output topic;
* the registry's id replaces the fixed id in each record's header (:class:`OutputFraming`);
* a schema the registry refuses (incompatible with what the subject holds, invalid, or the
  registry unreachable) raises :class:`SchemaRegistrationRefused`: the service does not start.

New schema versions are BACKWARD compatible (new fields optional with defaults), so a registry
subject at its default BACKWARD level accepts each new version and readers using the latest
schema read every older record.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from schemas.classified_record import LATEST_CLASSIFIED_VERSION, classified_schema
from schemas.decode.avro import frame_wire, split_wire
from stream.errors import UsageError
from stream.schema_registry import redact_url, redact_urls_in, split_credentials

__all__ = ["SchemaRegistrationRefused", "RegistryClient", "OutputFraming", "register_output_schemas", "subject_for",
           "registry_schema_lookup", "SUBJECT_STRATEGIES"]

log = structlog.get_logger(__name__)

SUBJECT_STRATEGIES = ("topic", "record")
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistrationRefused(UsageError):
    """The registry refused our schema (or did not answer): nothing may be published."""


def subject_for(topic: str, schema: Mapping[str, Any], strategy: str = "topic") -> str:
    """TopicNameStrategy ``<topic>-value`` or RecordNameStrategy ``<namespace>.<name>``."""
    if strategy == "topic":
        return f"{topic}-value"
    if strategy == "record":
        namespace = schema.get("namespace")
        return f"{namespace}.{schema['name']}" if namespace else str(schema["name"])
    raise ValueError(f"subject strategy must be one of {SUBJECT_STRATEGIES}, got {strategy!r}")


@dataclass
class RegistryClient:
    """The few calls of the Confluent Schema Registry REST API we need (standard library HTTP)."""

    url: str
    timeout_s: float = 10.0

    @property
    def shown(self) -> str:
        return redact_url(self.url.rstrip("/"))

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        # credentials written in the URL go in a header: urllib would not send them, and a password
        # with ':', '@' or '/' in it made http.client raise InvalidURL with the password in its text
        base, authorization = split_credentials(self.url.rstrip("/"))
        headers = {"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE}
        if authorization:
            headers["Authorization"] = authorization
        request = urllib.request.Request(f"{base}{path}", data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            return json.loads(response.read() or b"null")

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """``POST /subjects/{subject}/versions``: the id of ``schema`` under ``subject``."""
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions"
        try:
            answer = self._call("POST", path, {"schema": json.dumps(schema), "schemaType": "AVRO"})
        except urllib.error.HTTPError as exc:
            detail = _error_message(exc)
            if exc.code == 409:
                raise SchemaRegistrationRefused(
                    f"schema registry {self.shown} refused the classified schema for subject {subject!r}: incompatible "
                    f"with the versions it holds ({detail}); the schema evolves BACKWARD-compatibly, so check the "
                    f"subject's compatibility level and what was registered under it") from None
            raise SchemaRegistrationRefused(f"schema registry {self.shown} refused subject {subject!r}: HTTP {exc.code} "
                                            f"({detail})") from None
        except Exception as exc:  # noqa: BLE001 - URLError, OSError, http.client.InvalidURL...: the text may hold the URL
            reason = redact_urls_in(str(getattr(exc, "reason", exc)))
            if self.url and any(part and part in reason for part in _secrets(self.url)):
                reason = "(detail withheld: it held the URL's credentials)"
            raise SchemaRegistrationRefused(f"schema registry {self.shown} did not answer ({type(exc).__name__}: "
                                            f"{reason}): check kafka.output_schema_registry_url") from None
        try:
            return int(answer["id"])
        except (KeyError, TypeError, ValueError):
            raise SchemaRegistrationRefused(f"schema registry {self.shown}: no id in its answer {answer!r}") from None

    def schema(self, schema_id: int) -> Any:
        """``GET /schemas/ids/{id}``: the schema definition (parsed JSON)."""
        answer = self._call("GET", f"/schemas/ids/{int(schema_id)}")
        return json.loads(answer["schema"])


def _secrets(url: str) -> list[str]:
    """The password (raw and decoded) written in ``url``, to keep out of any message."""
    _, authorization = split_credentials(url)
    if authorization is None:
        return []
    import base64

    password = base64.b64decode(authorization.split(" ", 1)[1]).decode(errors="replace").partition(":")[2]
    return [p for p in {password, urllib.parse.quote(password, safe="")} if len(p) >= 3]


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
        return str(body.get("message") or body)
    except ValueError:
        return exc.reason or ""


@dataclass(frozen=True)
class OutputFraming:
    """Which schema id each output topic's records carry in their header."""

    #: topic -> registry id; a topic not named keeps the fixed shipped id.
    ids: Mapping[str, int] = field(default_factory=dict)

    def frame(self, topic: str, value: bytes) -> bytes:
        """``value`` (framed with the fixed id) re-framed with ``topic``'s registry id, if any."""
        schema_id = self.ids.get(topic)
        if schema_id is None:
            return value
        _, payload = split_wire(value)
        return frame_wire(schema_id, bytes(payload))


def register_output_schemas(registry_url: str, topics: Iterable[str], strategy: str = "topic",
                            client: RegistryClient | None = None) -> OutputFraming:
    """Register the classified schema for each output topic; no URL: the fixed ids (empty framing)."""
    if not registry_url:
        return OutputFraming()
    client = client or RegistryClient(registry_url)
    schema = classified_schema()
    ids: dict[str, int] = {}
    for topic in dict.fromkeys(t for t in topics if t):
        subject = subject_for(topic, schema, strategy)
        ids[topic] = client.register(subject, schema)
        log.info("classified_schema_registered", registry=client.shown, subject=subject, schema_id=ids[topic],
                 version="{}.{}".format(*LATEST_CLASSIFIED_VERSION), strategy=strategy)
    return OutputFraming(ids)


def registry_schema_lookup(registry_url: str, timeout_s: float = 10.0) -> Callable[[int], Any]:
    """id -> schema definition from ``registry_url``, cached (for ``decode_classified``)."""
    client = RegistryClient(registry_url, timeout_s)
    cache: dict[int, Any] = {}

    def lookup(schema_id: int) -> Any:
        if schema_id not in cache:
            cache[schema_id] = client.schema(schema_id)
        return cache[schema_id]

    return lookup
