"""deploy/pin_images.py (#23): images pinned by digest at release, and a check that fails while
any manifest pulls a mutable tag. Run on copies of the real manifests."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest

from .deployfiles import DEPLOY, yaml_documents

_spec = importlib.util.spec_from_file_location("pin_images", DEPLOY / "pin_images.py")
assert _spec is not None and _spec.loader is not None
pin_images = importlib.util.module_from_spec(_spec)
sys.modules["pin_images"] = pin_images
_spec.loader.exec_module(pin_images)

def _digest(i: int) -> str:
    """A made-up, well-formed digest: the tool is about rewriting, not about these values."""
    return "sha256:" + f"{i:02x}" * 32


@pytest.fixture
def deploy_copy(tmp_path):
    root = tmp_path / "deploy"
    for sub in ("compose", "docker", "k8s"):
        shutil.copytree(DEPLOY / sub, root / sub)
    return root


def _files(root):
    return (root / "compose" / "compose.yaml", (root / "docker" / "Dockerfile.cpu", root / "docker" / "Dockerfile.gpu"),
            root / "k8s" / "kustomization.yaml")


def _run(*args):
    return subprocess.run([sys.executable, str(DEPLOY / "pin_images.py"), *args], capture_output=True, text=True, timeout=60)


def test_check_lists_every_image_pulled_by_a_tag_alone(deploy_copy):
    left = {ref.image for ref in pin_images.unpinned(*_files(deploy_copy))}
    # what the repository leaves for release time (deploy/README.md, "Image digests")
    assert left == {"redis:7.4-alpine", "prom/prometheus:v3.1.0", "python:3.11-slim-bookworm",
                    "nvcr.io/nvidia/tensorrt:25.01-py3", "ghcr.io/example-org/survey-classifier:gpu"}
    # built here, never pulled: the classifier services of compose are not references to pin
    assert not any(ref.image.startswith("survey-classifier:") for ref in pin_images.compose_refs(deploy_copy / "compose" / "compose.yaml"))
    done = _run("--check", "--deploy-dir", str(deploy_copy))
    assert done.returncode == 1 and "redis:7.4-alpine is a tag alone" in done.stderr
    assert "compose/compose.yaml:" in done.stderr and "k8s/deployment.yaml:" in done.stderr


def test_pinning_every_image_makes_the_check_pass_and_the_manifests_still_parse(deploy_copy, tmp_path):
    images = sorted({ref.image for ref in pin_images.unpinned(*_files(deploy_copy))})
    digests = {image: _digest(i) for i, image in enumerate(images)}
    # imagetools-style input for one of them, JSON for the rest: both are read
    first = images[0]
    text = f"Name:      docker.io/library/{first}\nMediaType: application/vnd.oci.image.index.v1+json\nDigest:    {digests[first]}\n"
    (tmp_path / "a.txt").write_text(text)
    assert pin_images.read_digests(text) == {first: digests[first]}
    (tmp_path / "digests.json").write_text(json.dumps(digests))
    done = _run("--digests", str(tmp_path / "digests.json"), "--deploy-dir", str(deploy_copy))
    assert done.returncode == 0, done.stderr
    assert _run("--check", "--deploy-dir", str(deploy_copy)).returncode == 0

    (compose,) = yaml_documents(deploy_copy / "compose" / "compose.yaml")
    for name, service in compose["services"].items():
        if "build" not in service:
            assert pin_images.split_image(service["image"])[2].startswith("sha256:"), name
    redis = compose["services"]["redis"]["image"]
    assert redis == f"redis:7.4-alpine@{digests['redis:7.4-alpine']}"  # the tag stays, for people
    (kustomization,) = yaml_documents(deploy_copy / "k8s" / "kustomization.yaml")
    assert kustomization["images"] == [{"name": "ghcr.io/example-org/survey-classifier", "newTag": "gpu",
                                        "digest": digests["ghcr.io/example-org/survey-classifier:gpu"]}]
    assert kustomization["resources"] and kustomization["secretGenerator"]  # the rest untouched
    gpu = (deploy_copy / "docker" / "Dockerfile.gpu").read_text()
    assert f"ARG TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:25.01-py3@{digests['nvcr.io/nvidia/tensorrt:25.01-py3']}" in gpu
    cpu = (deploy_copy / "docker" / "Dockerfile.cpu").read_text()
    assert cpu.count(f"FROM python:${{PYTHON_VERSION}}-slim-bookworm@{digests['python:3.11-slim-bookworm']}") == 2
    # the Deployment keeps its tag: kustomize writes the digest in at apply time
    assert (deploy_copy / "k8s" / "deployment.yaml").read_text() == (DEPLOY / "k8s" / "deployment.yaml").read_text()

    # a second release: new digests replace the old ones, nothing is appended twice
    newer = {image: _digest(100 + i) for i, image in enumerate(images)}
    assert pin_images.pin(newer, *_files(deploy_copy)) == []
    (compose,) = yaml_documents(deploy_copy / "compose" / "compose.yaml")
    assert compose["services"]["redis"]["image"] == f"redis:7.4-alpine@{newer['redis:7.4-alpine']}"
    (kustomization,) = yaml_documents(deploy_copy / "k8s" / "kustomization.yaml")
    assert kustomization["images"][0]["digest"] == newer["ghcr.io/example-org/survey-classifier:gpu"]
    assert (deploy_copy / "k8s" / "kustomization.yaml").read_text().count("images:") == 1


def test_partial_digests_pin_what_they_name_and_report_the_rest(deploy_copy):
    left = pin_images.pin({"redis:7.4-alpine": _digest(1)}, *_files(deploy_copy))
    assert "redis:7.4-alpine" not in {ref.image for ref in left} and left


@pytest.mark.parametrize("text", ["redis:7.4-alpine@sha256:abc", '{"redis:7.4-alpine": "latest"}', "Digest: sha256:" + "0" * 64,
                                  "what is this line"])
def test_bad_digests_are_refused_in_one_line(text, tmp_path):
    with pytest.raises(pin_images.PinError):
        pin_images.read_digests(text)
    (tmp_path / "d.txt").write_text(text)
    done = _run("--digests", str(tmp_path / "d.txt"), "--deploy-dir", str(tmp_path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_the_images_pinned_in_the_repository_are_the_ones_the_readme_names():
    readme = (DEPLOY / "README.md").read_text()
    (compose,) = yaml_documents(DEPLOY / "compose" / "compose.yaml")
    for service in compose["services"].values():
        image = service.get("image", "")
        if "@" in image:
            assert image in readme, f"{image}: deploy/README.md says where this digest came from"
