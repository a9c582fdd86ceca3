"""Secrets stay secret: settings reprs, configuration errors and log lines never show a password."""
from __future__ import annotations

import pytest

from stream.config import ConfigError, load_settings
from stream.logs import redact_credentials
from stream.schema_registry import redact_url, redact_urls_in, split_credentials

SECRET = "hunter2-Zq9"


def test_repr_of_settings_redacts_redis_registry_and_client_secrets():
    settings = load_settings(env={
        "REDIS_URL": f"redis://:{SECRET}@redis.internal:6379/0",
        "SCHEMA_REGISTRY_URL": f"https://reader:{SECRET}@registry.internal:8081",
        "SC_KAFKA__SASL_PASSWORD": SECRET,
    })
    text = repr(settings)
    assert SECRET not in text and SECRET not in str(settings)
    assert "redis.internal:6379" in text and "registry.internal:8081" in text
    assert settings.redis.url.endswith("@redis.internal:6379/0")  # the value itself is intact


@pytest.mark.parametrize("env", [
    {"SC__REDIS__RETRY_MAX_S": f"redis://:{SECRET}@h:6379"},
    {"SC__REDIS__PUBLISH_WITHOUT_DEDUP": f"http://u:{SECRET}@h"},
    {"SC__BATCH__MAX_SIZE": f"redis://user:{SECRET}@host/0"},
])
def test_config_errors_name_the_key_but_never_echo_a_secret(env):
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert SECRET not in str(info.value)
    assert next(iter(env)).split("__", 2)[2].lower() in str(info.value)


def test_config_errors_from_toml_never_echo_secrets(tmp_path):
    for body in (f'[kafka]\nschema_registry_url = ["http://u:{SECRET}@h"]\n',
                 f'[kafka]\nclient = "sasl.password={SECRET}"\n',
                 f'[redis]\nurl = {{ password = "{SECRET}" }}\n'):
        path = tmp_path / "c.toml"
        path.write_text(body)
        with pytest.raises(ConfigError) as info:
            load_settings(path, env={})
        assert SECRET not in str(info.value), body


def test_url_redaction_helpers():
    assert redact_url(f"redis://:{SECRET}@r:6379/0") == "redis://***@r:6379/0"
    assert redact_url("http://h:8081/x") == "http://h:8081/x"
    text = f"failed http://u:{SECRET}@h:1/a; redis://:{SECRET}@r:6379/0; plain http://h/p@x"
    assert SECRET not in redact_urls_in(text) and "http://h/p@x" in redact_urls_in(text)
    bare, auth = split_credentials(f"http://reader:{SECRET}@h:8081/base")
    assert bare == "http://h:8081/base" and auth is not None and SECRET not in auth


def test_log_processor_removes_url_credentials():
    event = redact_credentials(None, "warning", {"event": "x", "error": f"cannot reach redis://:{SECRET}@r:1/0", "n": 3})
    assert SECRET not in event["error"] and event["n"] == 3
