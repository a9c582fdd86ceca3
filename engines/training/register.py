"""Put a trained network into the registry: weights into the weights folder, a card beside the others.

A model trained on a user's own label set (or a new version of a shipped one) becomes a card
named by the user: the network family's card gives the preprocessing, input kinds and input
contract; the labels are the user's, in the output order; ``[network_args] num_classes`` says
how many outputs the family's body was built with. When a card of that name exists already it
is moved to ``versions/`` (still loadable as ``name@version``) and the new weights get a
versioned file name, so nothing shipped is overwritten.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from engines.training.ztf_files import TrainingDataError

__all__ = ["MODEL_NAME", "family_card", "register_model", "resolve_init_weights", "default_init_weights", "round_to_half"]

log = structlog.get_logger(__name__)

#: a model name is a file stem and a TOML string: letters, digits, '_', '-'
MODEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def _dirs(cards_dir: Path | None, weights_dir: Path | None) -> tuple[Path, Path]:
    from engines.registry import CARDS_DIR, WEIGHTS_DIR

    return (Path(cards_dir) if cards_dir else CARDS_DIR), (Path(weights_dir) if weights_dir else WEIGHTS_DIR)


def family_card(network: str, cards_dir: Path | None = None):
    """The shipped card whose network is ``network`` (named after it), as the template."""
    from engines.cards import load_card
    from engines.registry import CARDS_DIR

    for folder in (Path(cards_dir) if cards_dir else CARDS_DIR, CARDS_DIR):
        path = folder / f"{network}.toml"
        if path.is_file():
            return load_card(path)
    raise TrainingDataError(f"no card for network {network!r} to take the preprocessing from")


def resolve_init_weights(ref: str, network: str, cards_dir: Path | None = None, weights_dir: Path | None = None) -> Path:
    """``--init-from``: a state-dict file, or a registered model (``name`` / ``name@version``)
    whose network family and preprocessing (its input kind) are the trained network's."""
    path = Path(ref)
    if path.suffix == ".pt" and path.is_file():
        return path
    from engines.contract import EngineError
    from engines.registry import load_registry

    cards, weights = _dirs(cards_dir, weights_dir)
    try:
        card = load_registry(cards, weights).card(ref)
    except EngineError as exc:
        raise TrainingDataError(f"--init-from {ref!r}: neither a .pt file nor a registered model ({exc})") from exc
    from engines.training.adapters import USER_PREPROCESSING

    expected = USER_PREPROCESSING.get(network) or family_card(network, cards).preprocessing
    if card.network != network or card.preprocessing != expected:
        raise TrainingDataError(f"--init-from {ref!r}: its network {card.network!r} / input {card.preprocessing!r} "
                                f"is not {network!r} / {expected!r}")
    if not card.weights_file:
        raise TrainingDataError(f"--init-from {ref!r}: the model has no weights file (untrained seed)")
    if card.init_seed is not None:
        raise TrainingDataError(f"--init-from {ref!r}: its weights are a delta over the network seeded with "
                                f"{card.init_seed}, not a state dict to start from (the head route, --head-blocks, "
                                "starts from that seed)")
    return weights / card.weights_file


def default_init_weights(network: str, cards_dir: Path | None = None,
                         weights_dir: Path | None = None) -> tuple[Path | None, str]:
    """Where the user recipe starts ``network`` from when ``--init-from`` is not given: the
    weights of the network's own card (``iicnet`` for iicnet) when that card is trained, reads
    the input kind a user's images are given (``USER_PREPROCESSING``, else the card's own) and
    ships a full state dict (not a delta over a seeded network); else None, seeded
    initialisation. Weights missing from ``weights_dir`` (a scratch registry) are taken from the
    shipped ``engines/weights`` when that file's sha256 is the card's. The second value says why,
    for the log and the run's summary."""
    from engines.training.adapters import USER_PREPROCESSING

    cards, weights = _dirs(cards_dir, weights_dir)
    try:
        card = family_card(network, cards)
    except TrainingDataError:
        return None, f"no {network} card"
    expected = USER_PREPROCESSING.get(network) or card.preprocessing
    if not card.trained or not card.weights_file:
        return None, f"{card.name} {card.version} is untrained"
    if card.preprocessing != expected:
        return None, f"{card.name} {card.version} reads {card.preprocessing!r}, a user's images are given {expected!r}"
    if card.init_seed is not None:
        return None, f"{card.name} {card.version} ships a delta over a seeded network, not a state dict"
    path = weights / card.weights_file
    if path.is_file():
        return path, f"{card.name} {card.version}: same network, same input kind"
    from engines.export import file_sha256
    from engines.registry import WEIGHTS_DIR

    shipped = WEIGHTS_DIR / card.weights_file        # a scratch --weights-dir: the shipped file, if it is the card's
    if shipped.is_file() and file_sha256(shipped) == card.weights_sha256:
        return shipped, f"{card.name} {card.version}: same network, same input kind (the shipped file, sha256 checked)"
    return None, f"{path} is not there"


def round_to_half(network):
    """The network with every floating tensor rounded through float16, in place: what a
    weights file saved with ``half=True`` loads as (evaluate that, not the float32 original)."""
    import torch

    with torch.no_grad():
        for tensor in network.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return network


def register_model(name: str, network: str, class_names: Sequence[str], weights_path: Path, version: str,
                   training: Mapping[str, Any], evaluation: Mapping[str, Any], description: str = "",
                   cards_dir: Path | None = None, weights_dir: Path | None = None,
                   preprocessing: str | None = None, half: bool = False,
                   surveys: Sequence[str] | None = None, survey_figures: Mapping[str, str] | None = None) -> Path:
    """Copy ``weights_path`` into the weights folder and write card ``name``; returns the card path.

    ``surveys`` (default: the family card's, the inputs the network takes) and one line of
    ``survey_figures`` each say where the model was checked; a registered model never fills a
    record's ``real_bogus`` (``real_bogus = false``) until someone checks it and edits its card.

    ``half``: store floating tensors as float16 (half the file; they load into the float32
    network as :func:`round_to_half` gives them)."""
    from engines.cards import load_card, write_card
    from engines.contract import EngineError
    from engines.export import file_sha256
    from engines.networks import NETWORKS

    if not MODEL_NAME.match(name):
        raise TrainingDataError(f"model name {name!r}: letters, digits, '_' and '-', starting with a letter")
    cards, weights = _dirs(cards_dir, weights_dir)
    template = family_card(network, cards)
    card_path = cards / f"{name}.toml"
    weights_name = f"{name}.pt"
    if card_path.is_file():
        current = load_card(card_path)
        if current.version == version:
            raise TrainingDataError(f"model {name!r} version {version!r} exists already: give another --version")
        (cards / "versions").mkdir(parents=True, exist_ok=True)
        shutil.move(str(card_path), cards / "versions" / f"{name}-{current.version}.toml")
        weights_name = f"{name}-{version}.pt"
    weights.mkdir(parents=True, exist_ok=True)
    cards.mkdir(parents=True, exist_ok=True)
    if (weights / weights_name).exists():      # never overwrite a file another version may load
        weights_name = f"{name}-{version}.pt"
    destination = weights / weights_name
    if destination.exists():
        raise TrainingDataError(f"weights file {destination} exists already: give another --version")
    if half:
        import torch

        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, destination)
    else:
        shutil.copyfile(weights_path, destination)
    labels = tuple(str(c) for c in class_names)
    args = dict(template.network_args)
    if labels != tuple(NETWORKS[network].labels):
        args["num_classes"] = len(labels)
    card = replace(template, name=name, version=version, trained=True, labels=labels,
                   contract=replace(template.contract, labels=labels), weights_file=weights_name,
                   weights_sha256=file_sha256(destination), init_seed=None, base_sha256="", network_args=args,
                   training=dict(training), evaluation=dict(evaluation),
                   preprocessing=preprocessing or template.preprocessing,
                   description=description or template.description, path=card_path,
                   surveys=tuple(template.surveys if surveys is None else surveys), real_bogus=False,
                   survey_figures=dict(survey_figures or {}))
    write_card(card, card_path)
    try:
        load_card(card_path)
    except EngineError as exc:
        raise TrainingDataError(f"the card written for {name!r} does not load: {exc}") from exc
    log.info("model_registered", model=name, version=version, card=str(card_path), weights=str(destination))
    return card_path
