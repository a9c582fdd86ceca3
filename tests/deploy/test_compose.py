"""deploy/compose/compose.yaml: the services, their wiring, and the settings the classifier is given."""
from __future__ import annotations

from pathlib import Path

import pytest

from stream.config import load_settings

from .deployfiles import DEPLOY, entrypoint_env_names, literal_env_names, settings_env_names, yaml_documents

COMPOSE_DIR = DEPLOY / "compose"
CLASSIFIERS = ("classifier", "classifier-gpu")


@pytest.fixture(scope="module")
def compose() -> dict:
    (doc,) = yaml_documents(COMPOSE_DIR / "compose.yaml")
    return doc


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _host_mounts(service: dict) -> dict[str, Path]:
    """container path -> host path for bind mounts (relative host paths resolved like compose)."""
    mounts = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith((".", "/")):
            mounts[container] = (COMPOSE_DIR / host).resolve()
    return mounts


def test_services(compose):
    assert {"kafka", "kafka-init", "redis", "prometheus", "grafana", *CLASSIFIERS} <= set(compose["services"])


def test_kafka_runs_in_kraft_mode(compose):
    kafka = compose["services"]["kafka"]
    env = _env(kafka)
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"] and env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert not any("ZOOKEEPER" in k for k in env)
    assert compose["services"]["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_topics_created_match_the_compose_config(compose):
    script = "\n".join(compose["services"]["kafka-init"]["command"])
    settings = load_settings(DEPLOY / "config" / "compose.toml", env={})
    k = settings.kafka
    for topic in (*k.alert_topics, *k.exposure_topics, k.output_topic, k.exposure_output_topic, k.dead_letter_topic):
        assert f" {topic}:" in f" {script}", f"topic {topic} is not created by kafka-init"


def test_gpu_classifier_reserves_a_gpu_in_its_own_profile(compose):
    cpu, gpu = (compose["services"][name] for name in CLASSIFIERS)
    assert cpu["profiles"] == ["cpu"] and gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and device["count"] >= 1
    assert "deploy" not in cpu
    assert gpu["build"]["dockerfile"].endswith("Dockerfile.gpu") and cpu["build"]["dockerfile"].endswith("Dockerfile.cpu")
    for service in (cpu, gpu):
        assert (COMPOSE_DIR / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_env_names_are_read_by_the_code(compose, name):
    known = settings_env_names() | literal_env_names() | entrypoint_env_names()
    env = _env(compose["services"][name])
    assert set(env) <= known, sorted(set(env) - known)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_config_loads_with_the_compose_environment(compose, name):
    service = compose["services"][name]
    mounts = _host_mounts(service)
    config = mounts["/etc/survey-classifier/config.toml"]
    assert service["command"] == ["run", "--config", "/etc/survey-classifier/config.toml"]
    settings = load_settings(config, env=_env(service))
    assert settings.kafka.bootstrap_servers.split(":")[0] == "kafka"
    assert settings.redis.url.split("//")[1].split(":")[0] == "redis"
    assert settings.observability.metrics_host == "0.0.0.0"
    if name == "classifier-gpu":
        assert settings.engine.backend == "tensorrt" and settings.engine.device.startswith("cuda")
    # the health listener (#23), not the metrics port
    assert f"http://127.0.0.1:{settings.observability.health_port}/readyz" in " ".join(service["healthcheck"]["test"])
    assert settings.observability.health_port not in (0, settings.observability.metrics_port)


def test_every_bind_mount_exists(compose):
    for name, service in compose["services"].items():
        for container, host in _host_mounts(service).items():
            assert host.exists(), f"{name}: {host} (mounted at {container}) is missing"


def test_named_volumes_are_declared(compose):
    declared = set(compose.get("volumes", {}))
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared


def test_prometheus_and_grafana_get_their_files(compose):
    prom = _host_mounts(compose["services"]["prometheus"])
    assert prom["/etc/prometheus/prometheus.yml"] == (DEPLOY / "prometheus" / "prometheus.yml").resolve()
    rule_files = yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")[0]["rule_files"]
    assert {prom[path] for path in rule_files} == {(DEPLOY / "prometheus" / name).resolve()
                                                   for name in ("alerts.yml", "latency-slo.yml")}
    grafana = _host_mounts(compose["services"]["grafana"])
    assert grafana["/etc/grafana/provisioning"] == (DEPLOY / "grafana" / "provisioning").resolve()
    (provider,) = yaml_documents(DEPLOY / "grafana" / "provisioning" / "dashboards" / "survey-classifier.yml")[0]["providers"]
    assert grafana[provider["options"]["path"]] == (DEPLOY / "grafana" / "dashboards").resolve()
