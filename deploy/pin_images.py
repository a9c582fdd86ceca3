#!/usr/bin/env python3
"""Pin the deployment's container images by digest at release time; check nothing pulls a mutable tag.

A tag (``redis:7.4-alpine``, ``...survey-classifier:gpu``) can be moved to other content at any
time; ``name:tag@sha256:...`` cannot (the tag stays for people to read, the digest is what is
pulled). No registry is asked here: the digests come from the release machine, e.g.

    crane digest --full-ref ghcr.io/example-org/survey-classifier:gpu >> digests.txt
    docker buildx imagetools inspect redis:7.4-alpine >> digests.txt     # its Name: / Digest: lines
    python deploy/pin_images.py --digests digests.txt                   # rewrite the manifests
    python deploy/pin_images.py --check                                 # exit 1 while a tag is left

``--digests`` reads a JSON object ``{"name:tag": "sha256:..."}``, lines ``name:tag@sha256:...``
(or ``name:tag sha256:...``), or ``imagetools inspect`` output, from a file or ``-`` (stdin).
What it rewrites: compose ``image:`` references (services that are built here, with ``build:``,
are skipped: nothing is pulled for them), Dockerfile ``FROM`` images (in the ``ARG`` default when
the ``FROM`` is only that argument), and the kustomization's ``images:`` entries (``newTag`` and
``digest``; kustomize writes them into the Deployment at apply time, so ``deployment.yaml`` keeps
its tag). Standard library only.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
COMPOSE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILES = (DEPLOY / "docker" / "Dockerfile.cpu", DEPLOY / "docker" / "Dockerfile.gpu")
KUSTOMIZATION = DEPLOY / "k8s" / "kustomization.yaml"

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_ARG = re.compile(r"^ARG\s+(\w+)=(\S+)\s*$")
_FROM = re.compile(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(\s+AS\s+\S+)?\s*$", re.I)
_IMAGES_HEADER = "images:"


class PinError(Exception):
    """Bad input (a digest that is not one, an unreadable digests file): one line for the user."""


@dataclass(frozen=True)
class ImageRef:
    """One image a manifest pulls: where, and the reference as the file spells it (ARGs resolved)."""

    path: Path
    line: int
    image: str

    @property
    def pinned(self) -> bool:
        return "@" in self.image and bool(DIGEST.fullmatch(self.image.rsplit("@", 1)[1]))


def split_image(image: str) -> tuple[str, str, str]:
    """(name, tag, digest) of ``name[:tag][@digest]``; the tag is what follows the last ``:`` after the last ``/``."""
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        return rest[:colon], rest[colon + 1:], digest
    return rest, "", digest


def _unpinned(image: str) -> str:
    return image.partition("@")[0]


def read_digests(text: str) -> dict[str, str]:
    """``{"name:tag": "sha256:..."}`` from JSON, ``ref@digest`` / ``ref digest`` lines, or imagetools output."""
    digests: dict[str, str] = {}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            digests = {str(k): str(v) for k, v in json.loads(stripped).items()}
        except (json.JSONDecodeError, AttributeError) as exc:
            raise PinError(f"digests: not a JSON object of image -> digest: {exc}") from None
    else:
        name = None
        for raw in stripped.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("Name:"):
                name = line.split(None, 1)[1] if " " in line else None
            elif line.startswith("Digest:"):
                if name is None:
                    raise PinError(f"digests: {line!r} without a Name: line before it")
                digests[name] = line.split(None, 1)[1]
                name = None
            elif line.startswith(("MediaType:", "Manifests:", "Platform:", "URL:", "Annotations:")) or raw.startswith((" ", "\t")):
                continue  # the rest of imagetools' listing (per-platform manifests are indented)
            elif "@" in line and " " not in line:
                ref, digest = line.rsplit("@", 1)
                digests[ref] = digest
            elif len(line.split()) == 2:
                ref, digest = line.split()
                digests[ref] = digest
            else:
                raise PinError(f"digests: cannot read {line!r} (want name:tag@sha256:..., JSON, or imagetools output)")
    for ref, digest in digests.items():
        if not DIGEST.fullmatch(digest):
            raise PinError(f"digests: {ref}: {digest!r} is not a sha256 digest (sha256: and 64 hex digits)")
        digests[ref] = digest
    return {_unpinned(_normalise(ref)): digest for ref, digest in digests.items()}


def _normalise(ref: str) -> str:
    """Docker Hub's long forms name the same image as the short ones the manifests use."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


# -- compose ----------------------------------------------------------------------------------

def compose_refs(path: Path) -> list[ImageRef]:
    """``image:`` of every service that is pulled (one with ``build:`` is built here, not pulled)."""
    refs: list[ImageRef] = []
    service: list[tuple[int, str]] = []
    built = False
    in_services = False

    def flush() -> None:
        if not built:
            refs.extend(ImageRef(path, n, image) for n, image in service)

    for n, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"^\S", line):
            if in_services:
                flush()
                service, built = [], False
            in_services = line.rstrip() == "services:"
            continue
        if not in_services:
            continue
        if re.match(r"^  [^\s#][^:]*:\s*$", line):
            flush()
            service, built = [], False
        elif m := re.match(r"^    image:\s*(\S+)\s*$", line):
            service.append((n, m.group(1).strip("'\"")))
        elif re.match(r"^    build:", line):
            built = True
    if in_services:
        flush()
    return refs


def pin_compose(path: Path, digests: dict[str, str]) -> list[ImageRef]:
    """Rewrite the pulled images that have a digest; returns those left without one."""
    lines = path.read_text().splitlines(keepends=True)
    left = []
    for ref in compose_refs(path):
        digest = digests.get(_unpinned(ref.image))
        if digest is None:
            if not ref.pinned:
                left.append(ref)
            continue
        lines[ref.line - 1] = lines[ref.line - 1].replace(ref.image, f"{_unpinned(ref.image)}@{digest}", 1)
    path.write_text("".join(lines))
    return left


# -- Dockerfiles ------------------------------------------------------------------------------

def _resolve(token: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), token)


def dockerfile_refs(path: Path) -> list[ImageRef]:
    """Every ``FROM`` image with the ``ARG`` defaults filled in (a ``FROM`` of an earlier stage is not an image)."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    refs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if m := _ARG.match(line):
            args.setdefault(m.group(1), m.group(2))
        elif m := _FROM.match(line):
            image = _resolve(m.group(1), args)
            if image.lower() not in stages:
                refs.append(ImageRef(path, n, image))
            if m.group(2):
                stages.add(m.group(2).split()[-1].lower())
    return refs


def pin_dockerfile(path: Path, digests: dict[str, str]) -> list[ImageRef]:
    lines = path.read_text().splitlines(keepends=True)
    left = []
    for ref in dockerfile_refs(path):
        digest = digests.get(_unpinned(ref.image))
        if digest is None:
            if not ref.pinned:
                left.append(ref)
            continue
        match = _FROM.match(lines[ref.line - 1].rstrip("\n"))
        assert match is not None  # dockerfile_refs found a FROM on this line
        token = match.group(1)
        only_arg = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", token)
        if only_arg:  # FROM ${TENSORRT_IMAGE}: the digest goes into the ARG's default
            name = only_arg.group(1) or only_arg.group(2)
            for i, line in enumerate(lines):
                if (m := _ARG.match(line.rstrip("\n"))) and m.group(1) == name:
                    lines[i] = f"ARG {name}={_unpinned(m.group(2))}@{digest}\n"
                    break
        else:
            lines[ref.line - 1] = lines[ref.line - 1].replace(token, f"{_unpinned(token)}@{digest}", 1)
    path.write_text("".join(lines))
    return left


# -- kustomize --------------------------------------------------------------------------------

def _resources(kustomization: Path) -> list[Path]:
    out, inside = [], False
    for line in kustomization.read_text().splitlines():
        if re.match(r"^\S", line):
            inside = line.rstrip() == "resources:"
        elif inside and (m := re.match(r"^\s*-\s*(\S+)\s*$", line)):
            out.append(kustomization.parent / m.group(1))
    return out


def kustomize_refs(kustomization: Path) -> list[ImageRef]:
    """``image:`` in the kustomization's resources (containers, init containers)."""
    refs = []
    for resource in _resources(kustomization):
        for n, line in enumerate(resource.read_text().splitlines(), 1):
            if m := re.match(r"^\s*(?:-\s+)?image:\s*(\S+)\s*$", line):
                refs.append(ImageRef(resource, n, m.group(1).strip("'\"")))
    return refs


def kustomize_images(kustomization: Path) -> dict[str, dict[str, str]]:
    """The ``images:`` entries: name -> {newTag, digest, ...}."""
    entries: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    inside = False
    for line in kustomization.read_text().splitlines():
        if re.match(r"^\S", line):
            inside = line.rstrip() == _IMAGES_HEADER
            continue
        if not inside or line.strip().startswith("#") or not line.strip():
            continue
        if m := re.match(r"^\s*-\s*(\w+):\s*(\S+)\s*$", line):
            current = {m.group(1): m.group(2).strip("'\"")}
            entries[current.get("name", "")] = current
        elif current is not None and (m := re.match(r"^\s+(\w+):\s*(\S+)\s*$", line)):
            current[m.group(1)] = m.group(2).strip("'\"")
            if m.group(1) == "name":
                entries[current["name"]] = current
    entries.pop("", None)
    return entries


def _unpinned_k8s(kustomization: Path) -> list[ImageRef]:
    images = kustomize_images(kustomization)
    return [ref for ref in kustomize_refs(kustomization)
            if not ref.pinned and not DIGEST.fullmatch(images.get(split_image(ref.image)[0], {}).get("digest", ""))]


def pin_kustomization(kustomization: Path, digests: dict[str, str]) -> list[ImageRef]:
    """(Re)write the ``images:`` block: one entry per image of the resources, with its digest."""
    images = kustomize_images(kustomization)
    for ref in kustomize_refs(kustomization):
        if ref.pinned:
            continue
        name, tag, _ = split_image(ref.image)
        entry = images.setdefault(name, {"name": name})
        entry.setdefault("newTag", tag)
        digest = digests.get(f"{name}:{entry['newTag']}") or digests.get(ref.image)
        if digest is not None:
            entry["digest"] = digest
    block = [_IMAGES_HEADER + "\n",
             "  # Written by deploy/pin_images.py at release: kustomize sets each image to name:newTag@digest.\n"]
    for name in sorted(images):
        entry = images[name]
        block.append(f"  - name: {name}\n")
        block.extend(f"    {key}: {entry[key]}\n" for key in ("newName", "newTag", "digest") if entry.get(key))
    lines = kustomization.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == _IMAGES_HEADER), None)
    if start is None:
        text = "".join(lines).rstrip("\n") + "\n" + "".join(block)
    else:
        end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\S", lines[i]) and not lines[i].startswith("#")), len(lines))
        text = "".join(lines[:start] + block + lines[end:])
    kustomization.write_text(text)
    return _unpinned_k8s(kustomization)


# -- the command ------------------------------------------------------------------------------

def unpinned(compose: Path = COMPOSE, dockerfiles: tuple[Path, ...] = DOCKERFILES,
             kustomization: Path = KUSTOMIZATION) -> list[ImageRef]:
    """Every image the deployment pulls by a mutable tag alone."""
    refs = [r for r in compose_refs(compose) if not r.pinned]
    for dockerfile in dockerfiles:
        refs += [r for r in dockerfile_refs(dockerfile) if not r.pinned]
    return refs + _unpinned_k8s(kustomization)


def pin(digests: dict[str, str], compose: Path = COMPOSE, dockerfiles: tuple[Path, ...] = DOCKERFILES,
        kustomization: Path = KUSTOMIZATION) -> list[ImageRef]:
    """Rewrite every manifest with the digests given; returns what is still on a tag alone."""
    left = pin_compose(compose, digests)
    for dockerfile in dockerfiles:
        left += pin_dockerfile(dockerfile, digests)
    return left + pin_kustomization(kustomization, digests)


def _where(ref: ImageRef, root: Path) -> str:
    try:
        return f"{ref.path.relative_to(root)}:{ref.line}"
    except ValueError:
        return f"{ref.path}:{ref.line}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pin_images.py", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 listing every image pulled by a tag alone")
    mode.add_argument("--digests", metavar="FILE", help="pin with these digests (JSON, ref@digest lines or imagetools "
                                                        "output; - for stdin), then report what is left")
    parser.add_argument("--deploy-dir", type=Path, default=DEPLOY, help="the deploy/ tree to read (default: this one)")
    args = parser.parse_args(argv)
    root = args.deploy_dir
    compose, kustomization = root / "compose" / "compose.yaml", root / "k8s" / "kustomization.yaml"
    dockerfiles = (root / "docker" / "Dockerfile.cpu", root / "docker" / "Dockerfile.gpu")
    try:
        if args.check:
            left = unpinned(compose, dockerfiles, kustomization)
        else:
            text = sys.stdin.read() if args.digests == "-" else Path(args.digests).read_text()
            left = pin(read_digests(text), compose, dockerfiles, kustomization)
    except (PinError, OSError) as exc:
        print(f"pin_images: {exc}", file=sys.stderr)
        return 2
    for ref in left:
        print(f"{_where(ref, root.parent)}: {ref.image} is a tag alone (no @sha256 digest)", file=sys.stderr)
    if left:
        print(f"pin_images: {len(left)} image reference(s) on a mutable tag", file=sys.stderr)
        return 1
    print("pin_images: every image is pinned by digest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
