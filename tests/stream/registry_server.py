"""A small Confluent-compatible schema registry for tests: a real HTTP server, in a thread.

No registry server can be installed here, so this implements the part of the Confluent Schema
Registry REST API that the service and stock clients (confluent-kafka's ``SchemaRegistryClient``
and ``AvroDeserializer``) use:

* ``POST /subjects/{s}/versions``: register; the same schema gets the same global id; a schema
  that is not compatible with the subject's latest version (level per subject, default
  ``BACKWARD``) is refused with 409, an unparsable one with 422;
* ``GET /schemas/ids/{id}`` (``?subject=`` accepted), ``GET /subjects``,
  ``GET /subjects/{s}/versions``, ``GET /subjects/{s}/versions/latest``;
* ``POST /compatibility/subjects/{s}/versions/latest``, ``PUT /config/{s}``.

For the lookup's failure modes, ``raw_answers`` sends a chosen status and body for an id (a
PROTOBUF schema, a 500, a 401) and ``byte_delay_s`` sends each schema answer a byte at a time.

The compatibility check is Avro schema resolution (the reader-can-read-writer rules of the Avro
specification): BACKWARD means the new schema reads data written with the latest one.
"""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import fastavro
from fastavro.schema import expand_schema

__all__ = ["RegistryServer", "can_read"]

_PRIMITIVE_PROMOTIONS = {
    "int": {"int"}, "long": {"int", "long"}, "float": {"int", "long", "float"},
    "double": {"int", "long", "float", "double"}, "string": {"string", "bytes"}, "bytes": {"bytes", "string"},
    "boolean": {"boolean"}, "null": {"null"},
}


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return schema["type"] if isinstance(schema["type"], str) else _type_name(schema["type"])


def _full_name(schema: dict) -> str:
    name = schema["name"]
    return name if "." in name or not schema.get("namespace") else f"{schema['namespace']}.{name}"


def can_read(reader: Any, writer: Any) -> bool:
    """Avro schema resolution: can data written with ``writer`` be read with ``reader``? (expanded schemas)"""
    if isinstance(writer, list):
        return all(can_read(reader, branch) for branch in writer)
    if isinstance(reader, list):
        return any(can_read(branch, writer) for branch in reader)
    if isinstance(reader, dict) and isinstance(reader.get("type"), (dict, list)):
        return can_read(reader["type"], writer)
    if isinstance(writer, dict) and isinstance(writer.get("type"), (dict, list)):
        return can_read(reader, writer["type"])
    r, w = _type_name(reader), _type_name(writer)
    if r in _PRIMITIVE_PROMOTIONS:
        return w in _PRIMITIVE_PROMOTIONS[r]
    if r != w:
        return False
    if r == "record":
        if _full_name(reader) != _full_name(writer):
            return False
        written = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            if field["name"] in written:
                if not can_read(field["type"], written[field["name"]]["type"]):
                    return False
            elif "default" not in field:
                return False
        return True
    if r == "array":
        return can_read(reader["items"], writer["items"])
    if r == "map":
        return can_read(reader["values"], writer["values"])
    if r == "enum":
        return set(writer["symbols"]) <= set(reader["symbols"]) or "default" in reader
    if r == "fixed":
        return reader["size"] == writer["size"] and _full_name(reader) == _full_name(writer)
    return False


def _compatible(new: Any, old: Any, level: str) -> bool:
    new_x, old_x = expand_schema(new), expand_schema(old)
    if level == "NONE":
        return True
    if level.startswith("BACKWARD"):
        return can_read(new_x, old_x)
    if level.startswith("FORWARD"):
        return can_read(old_x, new_x)
    return can_read(new_x, old_x) and can_read(old_x, new_x)  # FULL


class RegistryServer:
    """Start with :meth:`start`; ``url`` is its base URL. ``requests`` logs (method, path)."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}          # id -> canonical schema text
        self.subjects: dict[str, list[int]] = {}   # subject -> ids, one per version
        self.levels: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        #: id -> (status, body) sent as is for ``GET /schemas/ids/{id}`` (a PROTOBUF schema, a 500, ...)
        self.raw_answers: dict[int, tuple[int, bytes]] = {}
        #: > 0: every ``GET /schemas/ids/{id}`` body is sent one byte at a time, this long apart
        self.byte_delay_s = 0.0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RegistryServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the API
    def register(self, subject: str, text: str) -> tuple[int, dict]:
        try:
            parsed = json.loads(text)
            fastavro.parse_schema(parsed)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the client's invalid schema
            return 422, {"error_code": 42201, "message": f"Invalid schema: {exc}"}
        canonical = json.dumps(parsed, sort_keys=True)
        with self._lock:
            versions = self.subjects.setdefault(subject, [])
            for schema_id in versions:
                if self.schemas[schema_id] == canonical:
                    return 200, {"id": schema_id}
            if versions:
                latest = json.loads(self.schemas[versions[-1]])
                if not _compatible(parsed, latest, self.levels.get(subject, "BACKWARD")):
                    return 409, {"error_code": 409, "message": "Schema being registered is incompatible with an earlier schema for subject "
                                                               f"\"{subject}\" ({self.levels.get(subject, 'BACKWARD')})"}
            schema_id = next((i for i, t in self.schemas.items() if t == canonical), None)
            if schema_id is None:
                schema_id = len(self.schemas) + 1
                self.schemas[schema_id] = canonical
            versions.append(schema_id)
            return 200, {"id": schema_id}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _send_bytes(self, code: int, data: bytes, byte_delay_s: float = 0.0) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if byte_delay_s <= 0:
                    self.wfile.write(data)
                    return
                try:
                    for i in range(len(data)):
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(byte_delay_s)
                except OSError:
                    return  # the client gave up

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _route(self, method: str) -> None:
                path = urlsplit(self.path).path
                registry.requests.append((method, path))
                if method == "GET" and (m := re.fullmatch(r"/schemas/ids/(\d+)", path)) and int(m[1]) in registry.raw_answers:
                    status, raw = registry.raw_answers[int(m[1])]
                    return self._send_bytes(status, raw)
                if method == "GET" and (m := re.fullmatch(r"/schemas/ids/(\d+)", path)) and registry.byte_delay_s > 0:
                    text = registry.schemas.get(int(m[1]))
                    if text is not None:
                        return self._send_bytes(200, json.dumps({"schema": text}).encode(), registry.byte_delay_s)
                if method == "GET" and (m := re.fullmatch(r"/schemas/ids/(\d+)", path)):
                    text = registry.schemas.get(int(m[1]))
                    if text is None:
                        return self._send(404, {"error_code": 40403, "message": "Schema not found"})
                    return self._send(200, {"schema": text})
                if method == "GET" and path == "/subjects":
                    return self._send(200, sorted(registry.subjects))
                if (m := re.fullmatch(r"/subjects/([^/]+)/versions", path)):
                    subject = unquote(m[1])
                    if method == "POST":
                        code, body = registry.register(subject, self._body().get("schema", ""))
                        return self._send(code, body)
                    if subject not in registry.subjects:
                        return self._send(404, {"error_code": 40401, "message": "Subject not found"})
                    return self._send(200, list(range(1, len(registry.subjects[subject]) + 1)))
                if method == "GET" and (m := re.fullmatch(r"/subjects/([^/]+)/versions/(latest|\d+)", path)):
                    subject = unquote(m[1])
                    versions = registry.subjects.get(subject)
                    if not versions:
                        return self._send(404, {"error_code": 40401, "message": "Subject not found"})
                    number = len(versions) if m[2] == "latest" else int(m[2])
                    schema_id = versions[number - 1]
                    return self._send(200, {"subject": subject, "version": number, "id": schema_id,
                                            "schema": registry.schemas[schema_id]})
                if method == "POST" and (m := re.fullmatch(r"/compatibility/subjects/([^/]+)/versions/latest", path)):
                    subject = unquote(m[1])
                    versions = registry.subjects.get(subject)
                    new = json.loads(self._body()["schema"])
                    ok = not versions or _compatible(new, json.loads(registry.schemas[versions[-1]]),
                                                     registry.levels.get(subject, "BACKWARD"))
                    return self._send(200, {"is_compatible": ok})
                if method == "PUT" and (m := re.fullmatch(r"/config/([^/]+)", path)):
                    level = self._body()["compatibility"]
                    registry.levels[unquote(m[1])] = level
                    return self._send(200, {"compatibility": level})
                return self._send(404, {"error_code": 404, "message": f"no route {method} {path}"})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

            def log_message(self, *args: object) -> None:
                return

        return Handler
