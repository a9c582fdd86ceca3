"""One sanitiser for URL credentials (issue #23, case 8).

``SC__KAFKA__OUTPUT_SCHEMA_REGISTRY_URL=http://user:pass@host`` printed the password in a
start-up traceback (``http.client.InvalidURL`` escaped the handler: urllib parses the user info
as a port) and ``repr(Settings)`` showed it; ``redact_url`` missed passwords holding an
unencoded ``#``, ``/`` or ``?`` (``urlsplit`` cuts the user info there). Now every ``*_url``
setting is redacted in reprs, the user info runs to the last ``@``, and the output registry's
credentials go in a header.
"""
from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from stream.config import load_settings
from stream.output_registry import RegistryClient
from stream.schema_registry import redact_url, redact_urls_in, split_credentials
from tests.conftest import REPO
from tests.stream.registry_server import RegistryServer

PASSWORDS = ["S3cret-plain", "S3c#ret", "S3c/ret", "S3c?ret", "S3c@ret", "S3:c/r?e#t@x"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_no_helper_shows_a_password_whatever_it_holds(password):
    url = f"http://reader:{password}@registry.internal:8081/base"
    assert password not in redact_url(url) and redact_url(url) == "http://***@registry.internal:8081/base"
    text = f"GET {url}/schemas/ids/1 failed; then redis://:{password}@r:6379/0, see http://h/p@x"
    cleaned = redact_urls_in(text)
    assert password not in cleaned and "http://h/p@x" in cleaned and "registry.internal:8081/base" in cleaned
    bare, auth = split_credentials(url)
    assert bare == "http://registry.internal:8081/base"
    assert base64.b64decode(auth.split(" ", 1)[1]).decode() == f"reader:{password}"


@pytest.mark.parametrize("password", PASSWORDS)
def test_repr_of_settings_redacts_every_url_setting(password):
    settings = load_settings(env={
        "SC__KAFKA__OUTPUT_SCHEMA_REGISTRY_URL": f"http://writer:{password}@out.internal:8081",
        "SCHEMA_REGISTRY_URL": f"https://reader:{password}@in.internal:8081",
        "REDIS_URL": f"redis://:{password}@redis.internal:6379/0",
    })
    assert password not in repr(settings) and password not in str(settings)
    assert "out.internal:8081" in repr(settings)


def test_the_output_registry_is_reached_with_credentials_holding_a_slash():
    with RegistryServer() as server:
        host = server.url.removeprefix("http://")
        client = RegistryClient(f"http://writer:pa/ss-S3cret@{host}")
        schema_id = client.register("classified-value", {"type": "record", "name": "r", "fields": []})
    assert schema_id == 1 and server.requests == [("POST", "/subjects/classified-value/versions")]


def test_a_bad_output_registry_url_is_one_line_without_the_password():
    secret = "S3cretPw-4711"
    env = {**os.environ, "SC__KAFKA__OUTPUT_SCHEMA_REGISTRY_URL": f"http://user:{secret}@127.0.0.1",
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "REDIS_URL": "redis://127.0.0.1:9/0", "PYTHONPATH": str(REPO),
           "SC__OBSERVABILITY__METRICS_PORT": "0", "SC__OBSERVABILITY__HEALTH_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "stream.cli", "run", "--allow-untrained"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert secret not in out and "Traceback" not in out, out[-3000:]
    assert done.returncode == 2 and "output_schema_registry_url" in out
