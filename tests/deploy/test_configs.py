"""Every ready config under deploy/config loads with the real settings loader, and says what it claims."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer

from stream.config import SECRET_MARKERS, load_settings

from .deployfiles import DEPLOY, is_librdkafka_property

CONFIGS = sorted((DEPLOY / "config").rglob("*.toml"))
SECURE = DEPLOY / "config" / "secure"
CONTAINER_CONFIGS = ["ztf.toml", "rubin.toml", "compose.toml"]


def _is_secret(prop: str) -> bool:
    """What stream.config redacts, less names of places (a token endpoint URL, a key file path)."""
    if prop.endswith((".url", ".location")):
        return False
    return any(marker in prop.lower() for marker in SECRET_MARKERS)


def test_the_expected_configs_exist():
    names = {p.relative_to(DEPLOY / "config").as_posix() for p in CONFIGS}
    assert {"ztf.toml", "rubin.toml", "embedded.toml", "compose.toml",
            "secure/scram-sha512-tls.toml", "secure/oauthbearer-oidc-tls.toml", "secure/tls-only.toml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_config_loads_with_no_environment(path: Path):
    settings = load_settings(path, env={})
    assert settings.kafka.group_id and settings.kafka.alert_topics


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_config_holds_no_secret_and_only_real_librdkafka_properties(path: Path):
    client = load_settings(path, env={}).kafka.client
    assert not [k for k in client if _is_secret(k)], "secrets belong in KAFKA_CLIENT_PROPERTIES_FILE or env"
    unknown = [k for k in client if not is_librdkafka_property(k, str(client[k]))]
    assert not unknown


@pytest.mark.parametrize("name", CONTAINER_CONFIGS)
def test_container_configs_listen_on_all_interfaces(name: str):
    obs = load_settings(DEPLOY / "config" / name, env={}).observability
    assert obs.metrics_host == "0.0.0.0" and obs.metrics_port > 0 and obs.log_format == "json"
    assert obs.health_port == 9109 != obs.metrics_port  # the probes' own listener (#23), where the manifests probe


def test_environment_overrides_a_ready_config():
    settings = load_settings(DEPLOY / "config" / "rubin.toml", env={
        "KAFKA_BOOTSTRAP_SERVERS": "broker.example.org:9094",
        "SCHEMA_REGISTRY_URL": "https://registry.example.org",
        "SC__KAFKA__GROUP_ID": "someuser-survey-classifier",
        "SC__BATCH__MAX_SIZE": "128",
    })
    assert settings.kafka.bootstrap_servers == "broker.example.org:9094"
    assert settings.kafka.schema_registry_url == "https://registry.example.org"
    assert settings.kafka.group_id == "someuser-survey-classifier"
    assert settings.batch.max_size == 128


def test_embedded_config_uses_an_eager_assignor():
    from stream.stack import EMBEDDED_ASSIGNMENT_STRATEGY, EMBEDDED_SESSION_TIMEOUT_MS, EMBEDDED_TOPICS

    kafka = load_settings(DEPLOY / "config" / "embedded.toml", env={}).kafka
    assert kafka.assignment_strategy == EMBEDDED_ASSIGNMENT_STRATEGY == "range"
    assert kafka.session_timeout_ms == EMBEDDED_SESSION_TIMEOUT_MS
    assert kafka.all_topics() == list(EMBEDDED_TOPICS)   # what `stack up` creates is what the config reads


@pytest.mark.parametrize("name", ["ztf.toml", "rubin.toml", "compose.toml"])
def test_real_kafka_configs_rebalance_cooperatively(name: str):
    assert load_settings(DEPLOY / "config" / name, env={}).kafka.assignment_strategy == "cooperative-sticky"


def test_ztf_subscribes_to_every_nightly_public_topic_by_regex():
    topics = load_settings(DEPLOY / "config" / "ztf.toml", env={}).kafka.alert_topics
    (pattern,) = topics
    assert pattern.startswith("^"), "librdkafka treats only names starting with ^ as a regex"
    rx = re.compile(pattern)
    assert rx.match("ztf_20240618_programid1")
    assert not rx.match("ztf_20240618_programid2") and not rx.match("ztf_2024061_programid1")


def test_ztf_topic_list_override_for_a_replay():
    settings = load_settings(DEPLOY / "config" / "ztf.toml",
                             env={"SC__KAFKA__ALERT_TOPICS": "ztf_20240618_programid1, ztf_20240619_programid1"})
    assert settings.kafka.alert_topics == ("ztf_20240618_programid1", "ztf_20240619_programid1")


def test_rubin_config_names_topic_registry_and_scram():
    kafka = load_settings(DEPLOY / "config" / "rubin.toml", env={}).kafka
    assert re.fullmatch(r"lsst-alerts-v\d+\.\d+", kafka.alert_topics[0])
    assert kafka.schema_registry_url.startswith("https://")
    assert kafka.client["security.protocol"] == "SASL_SSL" and kafka.client["sasl.mechanism"] == "SCRAM-SHA-512"


# ---------------------------------------------------------------- secure connections

def _properties_from_example(example: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A filled-in copy of a *.properties.example (placeholders replaced by test values)."""
    filled = {}
    for line in example.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _ = line.split("=", 1)
            filled[key.strip()] = f"test-value-for-{key.strip()}"
    path = tmp_path / "client.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in filled.items()))
    return path, filled


@pytest.mark.parametrize("stem", ["scram-sha512-tls", "oauthbearer-oidc-tls", "tls-only"])
def test_secure_example_loads_with_its_secret_file_and_never_prints_it(stem: str, tmp_path: Path):
    props_file, secrets = _properties_from_example(SECURE / f"{stem}.properties.example", tmp_path)
    assert secrets and all(_is_secret(k) or k == "sasl.username" for k in secrets)
    settings = load_settings(SECURE / f"{stem}.toml", env={"KAFKA_CLIENT_PROPERTIES_FILE": str(props_file),
                                                          "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    conf = settings.kafka.common_config()
    for key, value in secrets.items():
        assert conf[key] == value
        if _is_secret(key):
            assert value not in repr(settings)
    assert conf["security.protocol"] in ("SASL_SSL", "SSL")
    assert "ssl.ca.location" in conf


@pytest.mark.parametrize("stem", ["scram-sha512-tls", "oauthbearer-oidc-tls", "tls-only"])
def test_secure_example_is_accepted_by_librdkafka(stem: str, tmp_path: Path):
    """librdkafka validates names and values at construction; file locations point at real files here."""
    props_file, _ = _properties_from_example(SECURE / f"{stem}.properties.example", tmp_path)
    conf = load_settings(SECURE / f"{stem}.toml", env={"KAFKA_CLIENT_PROPERTIES_FILE": str(props_file),
                                                      "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}).kafka.common_config()
    if "ssl.certificate.location" in conf:
        key, cert = tmp_path / "client.key", tmp_path / "client.crt"
        import subprocess
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        conf.update({"ssl.certificate.location": str(cert), "ssl.key.location": str(key), "ssl.ca.location": str(cert)})
        conf.pop("ssl.key.password", None)  # the generated key is not encrypted
    else:
        conf["ssl.ca.location"] = "/etc/ssl/certs/ca-certificates.crt"
    consumer = Consumer({**conf, "group.id": "deploy-validate"})
    consumer.close()


def test_properties_examples_carry_placeholders_only():
    for example in sorted(DEPLOY.rglob("*.properties.example")):
        for line in example.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                _, value = line.split("=", 1)
                assert re.fullmatch(r"<[^<>]+>", value.strip()), f"{example}: {line!r} is not a placeholder"


def test_redis_tls_auth_url_example_parses_to_a_verified_tls_connection():
    lines = [line for line in (SECURE / "redis-url.example").read_text().splitlines() if line and not line.startswith("#")]
    (url,) = lines
    assert url.startswith("rediss://")
    client = redis.Redis.from_url(url.replace("<password>", "pa%40ss"))
    pool = client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    kwargs = pool.connection_kwargs
    assert kwargs["password"] == "pa@ss" and kwargs["username"] == "survey-classifier"
    assert kwargs["ssl_cert_reqs"] == "required" and kwargs["ssl_ca_certs"].startswith("/etc/survey-classifier/tls/")
    client.close()
