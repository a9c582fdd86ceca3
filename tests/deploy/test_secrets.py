"""No secret value is written in plain YAML or on a command line: only secretKeyRef or mounted files."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stream.config import SECRET_MARKERS

from .deployfiles import DEPLOY, all_yaml_files, yaml_documents

#: Environment variables whose value is a credential (the Redis URL carries the password).
SECRET_ENV = re.compile(r"(PASSWORD|SECRET|TOKEN|REDIS_URL|CREDENTIAL|KEY_PEM)", re.I)
URL_WITH_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@<>]+@")


def _walk(node: Any, path: str = ""):
    """(path, key, value) for every mapping entry in a YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, str(key), value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{path}[{i}]")


def _strings(node: Any):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


YAML_FILES = all_yaml_files()


def test_there_is_yaml_to_check():
    assert len(YAML_FILES) >= 10


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_no_secret_objects_with_data(path: Path):
    for doc in yaml_documents(path):
        if isinstance(doc, dict) and doc.get("kind") == "Secret":
            assert not doc.get("data") and not doc.get("stringData"), "create Secrets from files, not YAML"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_secret_env_vars_come_from_secret_refs(path: Path):
    for doc in yaml_documents(path):
        for where, key, value in _walk(doc):
            # Kubernetes env lists: [{name, value | valueFrom}]
            if key == "env" and isinstance(value, list):
                for entry in value:
                    if SECRET_ENV.search(entry["name"]) and not entry["name"].endswith("_FILE"):
                        assert "value" not in entry, f"{where}: {entry['name']} has a literal value"
                        assert "secretKeyRef" in entry["valueFrom"], f"{where}: {entry['name']}"
            # compose environment mappings
            if key == "environment" and isinstance(value, dict):
                for name in value:
                    assert not (SECRET_ENV.search(name) and name != "REDIS_URL"), f"{where}: {name}"
                    if name == "REDIS_URL":
                        assert not URL_WITH_PASSWORD.search(str(value[name])), "a password in REDIS_URL"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_no_credential_like_values(path: Path):
    for doc in yaml_documents(path):
        for text in _strings(doc):
            assert not URL_WITH_PASSWORD.search(text), f"URL with a password: {text[:60]!r}"
            embedded_file_lines = text.splitlines() if "\n" in text else []  # ConfigMap data, scripts
            for line in embedded_file_lines:
                m = re.match(r'\s*"?([a-z0-9_.]+)"?\s*[=:]\s*"?([^"#]+)', line)
                if m and any(marker in m.group(1) for marker in SECRET_MARKERS) \
                        and not m.group(1).endswith((".url", ".location")) and "<" not in m.group(2):
                    pytest.fail(f"{path}: secret-like setting {m.group(1)} has a value")
        for where, key, value in _walk(doc):
            if isinstance(value, str) and key.lower() in ("password", "secret", "token", "apikey", "api_key"):
                pytest.fail(f"{where}.{key} holds a literal")


def test_no_secrets_on_command_lines():
    """Container commands and args never carry credentials (visible in ps and pod specs)."""
    flagged = re.compile(r"(password|secret|token|sasl\.|requirepass|--user\b)", re.I)
    for path in YAML_FILES:
        for doc in yaml_documents(path):
            for where, key, value in _walk(doc):
                if key in ("command", "args", "entrypoint") and isinstance(value, (list, str)):
                    words = value if isinstance(value, list) else [value]
                    assert not any(flagged.search(str(w)) for w in words), f"{path}:{where}.{key}"
    for dockerfile in (DEPLOY / "docker").glob("Dockerfile.*"):
        if dockerfile.suffix == ".dockerignore":
            continue
        for line in dockerfile.read_text().splitlines():
            if line.startswith(("ENV", "ARG")):
                assert not flagged.search(line), f"{dockerfile.name}: {line}"


def test_the_checks_catch_a_planted_secret(tmp_path: Path):
    """The detectors above do fire: a manifest with a literal password and a Secret with data."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "kind: Secret\nstringData:\n  password: hunter2\n---\n"
        "env:\n  - name: SC_KAFKA__SASL_PASSWORD\n    value: hunter2\n"
        "  - name: REDIS_URL\n    value: rediss://u:hunter2@redis:6380/0\n"
    )
    embedded = tmp_path / "configmap.yaml"
    embedded.write_text('data:\n  config.toml: |\n    [kafka.client]\n    "sasl.password" = "hunter2"\n')
    with pytest.raises(AssertionError):
        test_no_secret_objects_with_data(bad)
    with pytest.raises(AssertionError):
        test_secret_env_vars_come_from_secret_refs(bad)
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        test_no_credential_like_values(bad)
    with pytest.raises(pytest.fail.Exception):
        test_no_credential_like_values(embedded)
