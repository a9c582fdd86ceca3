"""deploy/k8s: kinds, required fields, and that the manifests agree with each other and the code."""
from __future__ import annotations

import ast
import json
import math
import re

import pytest

from stream.config import load_settings

from .deployfiles import DEPLOY, REPO, entrypoint_env_names, literal_env_names, settings_env_names, yaml_documents

K8S = DEPLOY / "k8s"
EXPECTED_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                  "ScaledObject", "TriggerAuthentication", "NetworkPolicy"}


@pytest.fixture(scope="module")
def kustomization() -> dict:
    (doc,) = yaml_documents(K8S / "kustomization.yaml")
    return doc


@pytest.fixture(scope="module")
def objects(kustomization) -> dict[str, dict]:
    """kind -> object for every manifest the kustomization lists (one object per kind here)."""
    found: dict[str, dict] = {}
    for resource in kustomization["resources"]:
        for doc in yaml_documents(K8S / resource):
            assert doc["kind"] not in found, f"two objects of kind {doc['kind']}"
            found[doc["kind"]] = doc
    return found


@pytest.fixture(scope="module")
def container(objects) -> dict:
    (c,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


@pytest.fixture(scope="module")
def settings(objects, container, tmp_path_factory):
    """The Deployment's settings: the ConfigMap's config.toml plus the container's literal env."""
    path = tmp_path_factory.mktemp("k8s") / "config.toml"
    path.write_text(objects["ConfigMap"]["data"]["config.toml"])
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.pop("KAFKA_CLIENT_PROPERTIES_FILE")  # a mounted Secret in the cluster
    return load_settings(path, env=env)


def test_every_manifest_is_listed_and_has_the_required_fields(kustomization, objects):
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    assert set(objects) == EXPECTED_KINDS
    for kind, obj in objects.items():
        assert obj["apiVersion"] and obj["metadata"]["name"]
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == kustomization["namespace"]


def test_configmap_is_the_rubin_config_and_loads(objects):
    text = objects["ConfigMap"]["data"]["config.toml"]
    assert text == (DEPLOY / "config" / "rubin.toml").read_text()


def test_deployment_requests_a_gpu_and_runs_the_service(objects, container, settings):
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["args"] == ["run", "--config", "/etc/survey-classifier/config.toml"]
    assert settings.engine.backend == "tensorrt" and settings.observability.metrics_host == "0.0.0.0"
    selector = objects["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= objects["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    assert objects["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    assert pod["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]


def test_probes_hit_the_health_endpoints_on_the_health_port(container, settings):
    """#23: the probes use their own listener (observability.health_port), never the metrics port."""
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    obs = settings.observability
    assert ports == {"metrics": obs.metrics_port, "health": obs.health_port} and obs.health_port not in (0, obs.metrics_port)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "health"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "TensorRT engine build needs minutes"


def test_pod_runs_as_non_root(objects, container):
    pod_security = objects["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_env_names_are_read_by_the_code(container):
    known = settings_env_names() | literal_env_names() | entrypoint_env_names()
    names = {e["name"] for e in container["env"]}
    assert names <= known, sorted(names - known)


def test_config_and_secrets_are_mounted_where_the_env_points(objects, container, kustomization):
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/etc/survey-classifier/config.toml"]]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    env = {e["name"]: e for e in container["env"]}
    props_file = env["KAFKA_CLIENT_PROPERTIES_FILE"]["value"]
    directory, filename = props_file.rsplit("/", 1)
    secret_volume = volumes[mounts[directory]]["secret"]
    assert filename in [item["path"] for item in secret_volume["items"]]
    generated = {g["name"]: [f.split("=")[0] for f in g["files"]] for g in kustomization["secretGenerator"]}
    assert set(item["key"] for item in secret_volume["items"]) <= set(generated[secret_volume["secretName"]])
    redis_ref = env["REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert redis_ref["key"] in generated[redis_ref["name"]]
    for volume in volumes.values():
        if "secret" in volume:
            assert volume["secret"]["secretName"] in generated
    tls_dir = [path for path, name in mounts.items() if "secret" in volumes[name] and path.endswith("/tls")][0]
    assert f"ssl_ca_certs={tls_dir}/" in (DEPLOY / "config" / "secure" / "redis-url.example").read_text()


def test_service_selects_the_pods_and_exposes_metrics(objects, container):
    service = objects["Service"]["spec"]
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    (port,) = service["ports"]
    assert port["targetPort"] == container["ports"][0]["name"] and port["port"] == container["ports"][0]["containerPort"]


def test_pdb_selects_the_pods(objects):
    pdb = objects["PodDisruptionBudget"]["spec"]
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable") is not None


def test_scaledobject_scales_the_deployment_on_the_groups_lag(objects, container, settings):
    scaled = objects["ScaledObject"]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]
    partitions = int(scaled["metadata"]["annotations"]["survey-classifier/topic-partitions"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["consumerGroup"] == settings.kafka.group_id
    assert meta["topic"] in settings.kafka.alert_topics
    assert meta["bootstrapServers"] == settings.kafka.bootstrap_servers
    assert meta["allowIdleConsumers"] == "false"
    assert trigger["authenticationRef"]["name"] == objects["TriggerAuthentication"]["metadata"]["name"]
    # lagThreshold = per-pod throughput x the seconds of backlog one member may hold (deploy/README.md).
    annotations = scaled["metadata"]["annotations"]
    per_pod, drain_s = int(annotations["survey-classifier/per-pod-throughput"]), int(annotations["survey-classifier/drain-seconds"])
    assert int(meta["lagThreshold"]) == per_pod * drain_s


def _readme_scaling_inputs(readme: str) -> dict[str, float]:
    """The figures table of deploy/README.md's "KEDA's lag trigger from the measured capacity"."""
    section = readme.split("### KEDA's lag trigger from the measured capacity", 1)[1].split("\n### ", 1)[0]
    cells = {row.split("|")[1].strip(): row.split("|")[2].strip()
             for row in section.splitlines() if row.startswith("| ") and not row.startswith("| figure")}
    def number(key_start: str) -> list[float]:
        (value,) = [v for k, v in cells.items() if k.startswith(key_start)]
        return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*(?:\.\d+)?", value)]
    (c,), (f,), (d,), (h,), (partitions,) = (number("`C`"), number("`F`"), number("`D`"), number("`h`"),
                                            number("partitions"))
    _, v_peak = number("`V`, `V_peak`")
    return {"C": c, "F": f, "D": d, "h": h, "V_peak": v_peak, "partitions": partitions}


def _evaluate(arithmetic: str, names: dict[str, float]) -> float:
    """A README formula ("C x D", "ceil(h x 0.98 x V_peak / (C x (60 - F)))"), numbers and names only."""
    tree = ast.parse(arithmetic.replace(" x ", " * "), mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.Mult, ast.Div, ast.Sub, ast.Add, ast.Constant, ast.Name, ast.Load, ast.Call)
    assert all(isinstance(node, allowed) for node in ast.walk(tree)), arithmetic
    return eval(compile(tree, "README", "eval"), {"__builtins__": {}}, {"ceil": math.ceil, **names})


def test_keda_figures_follow_the_readme_arithmetic_from_the_measured_capacity(objects):
    """deploy/README.md writes lagThreshold, minReplicaCount and maxReplicaCount out as formulas over
    its figures table, then with numbers: both must give the stated result, and the manifest must
    carry it; the measured capacity must be the one the night benchmark's results file holds."""
    readme = (DEPLOY / "README.md").read_text()
    inputs = _readme_scaling_inputs(readme)
    lines = dict(re.findall(r"^    (lagThreshold|minReplicaCount|maxReplicaCount)\s+=\s+(.+)$", readme, re.M))
    assert set(lines) == {"lagThreshold", "minReplicaCount", "maxReplicaCount"}
    stated = {}
    for name, line in lines.items():
        parts = [p.strip() for p in re.split(r"\s{2,}=\s+", line)]
        formula, numeric, result = (parts if len(parts) == 3 else [parts[0], parts[1], parts[1]])
        stated[name] = int(result)
        assert _evaluate(formula, inputs) == _evaluate(numeric, {}) == stated[name], (name, line)

    scaled = objects["ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    annotations = scaled["metadata"]["annotations"]
    assert int(trigger["metadata"]["lagThreshold"]) == stated["lagThreshold"]
    assert scaled["spec"]["minReplicaCount"] == stated["minReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] == stated["maxReplicaCount"] == int(annotations["survey-classifier/topic-partitions"])
    assert int(annotations["survey-classifier/per-pod-throughput"]) == inputs["C"]
    assert int(annotations["survey-classifier/drain-seconds"]) == inputs["D"]
    # A member's share of lag at the threshold must drain inside the 60 s objective.
    assert inputs["D"] + inputs["F"] < 60
    # C is the measured figure: the slowest visit drain of one member in the committed Rubin
    # break-point run (real LSSTCam alerts), rounded down to ten.
    rubin = json.loads((REPO / "benchmarks" / "results" / "intel-r--xeon-r--processor-2cores" / "rubin-break-point"
                        / "rubin.json").read_text())
    one_member = [run for run in rubin["runs"] if run["members"] == 1 and run["complete"] and run["meets_objective"]]
    assert rubin["mode"] == "break-point" and one_member
    assert 10 * (min(run["throughput_per_s"] for run in one_member) // 10) == inputs["C"]


def test_trigger_authentication_reads_existing_secrets(objects, kustomization):
    generated = {g["name"]: [f.split("=")[0] for f in g["files"]] for g in kustomization["secretGenerator"]}
    refs = objects["TriggerAuthentication"]["spec"]["secretTargetRef"]
    assert {r["parameter"] for r in refs} >= {"sasl", "username", "password", "tls"}
    for ref in refs:
        assert ref["key"] in generated[ref["name"]]


def test_secret_files_have_examples_and_are_git_ignored(kustomization):
    secrets_dir = K8S / "secrets"
    ignore = (secrets_dir / ".gitignore").read_text().split()
    assert "*" in ignore and "!*.example" in ignore
    for generator in kustomization["secretGenerator"]:
        for entry in generator["files"]:
            path = entry.split("=", 1)[1]
            if not path.endswith(".crt"):  # CA certificates are the operator's own files
                assert (K8S / f"{path}.example").is_file(), path


def test_rubin_sizing_in_the_readme_follows_its_formula():
    """The README's table is ceil(h * V / (W * T_pod)) with V = 10,000 alerts, h = 1.5."""
    readme = (DEPLOY / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| ") and line.split("|")[1].strip().replace(",", "").isdigit()]
    assert rows
    for row in rows:
        cells = [c.strip().replace(",", "") for c in row.strip("|").split("|")]
        t_pod, replicas = int(cells[0]), [int(c) for c in cells[1:]]
        assert replicas == [math.ceil(1.5 * 10_000 / (w * t_pod)) for w in (30, 10, 5)]


def test_only_prometheus_may_reach_the_pods_and_only_on_the_metrics_port(objects, container):
    """#23: the pods listen on 0.0.0.0 (probes need it); a NetworkPolicy keeps every other pod off
    both listeners (no pod reaches the health port at all: kubelet probes it from the node), so no
    pod can starve /healthz and get a member restarted by its liveness probe."""
    policy = objects["NetworkPolicy"]["spec"]
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items() and policy["podSelector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress"]           # outbound (Kafka, Redis) untouched
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"} and "namespaceSelector" in peer
    (port,) = rule["ports"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port == {"port": "metrics", "protocol": "TCP"} and named["metrics"] == 9108
    assert container["livenessProbe"]["httpGet"]["port"] == "health" and named["health"] == 9109
    service_ports = [p["targetPort"] for p in objects["Service"]["spec"]["ports"]]
    assert service_ports == ["metrics"], "the health port is kubelet's, not a Service's"
