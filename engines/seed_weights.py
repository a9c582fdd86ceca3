"""Write seeded-initialised (untrained) weights and their cards: ``python -m engines.seed_weights``.

Until trained weights ship, every model has a card with ``trained = false`` and weights from
``torch.manual_seed(INIT_SEED)`` + the network's default initialisation, so ONNX export,
backends and the service can be exercised end to end. HR-CelestialNet's untrained card
(97 M parameters, ~390 MB) names no file: it records the seed and the state hash, and the
registry rebuilds the same weights at load time (and checks the hash). Running this module
overwrites the named cards with untrained ones; a trained card is written when a training run
is shipped (engines/training/README.md).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from engines.cards import ModelCard, write_card
from engines.contract import InputContract
from engines.export import file_sha256
from engines.networks import NETWORKS, build_network
from engines.registry import CARDS_DIR, WEIGHTS_DIR, state_sha256
from schemas.alert import InputKind

__all__ = ["INIT_SEED", "UNTRAINED_CARDS", "write_seeded"]

INIT_SEED = 20261122

_UNTRAINED = "none: seeded initial weights (untrained); scores are meaningless until the training helper ships weights"

#: name -> (network, input kinds, preprocessing, max_batch, opt_batch, ship a weights file, description, paper)
UNTRAINED_CARDS: dict[str, tuple] = {
    "realbogus": (
        "realbogus", (InputKind.DIFFERENCE_ALERT,), "difference_stamps_69", 1024, 256, True,
        "Real/bogus CNN on (science, template, difference) stamps, 3x69x69 -> (bogus, real).",
        "Keras CNN on SDSS-II SN survey hand-scanned stamps (seeds/004_9f58f5ba70d1f55b.txt)",
    ),
    "iicnet": (
        "iicnet", (InputKind.MULTIBAND_CUTOUT,), "wise_w123_80", 1024, 256, True,
        "IICnet (conv5x5 + RFB + two CBAM) on WISE W1/W2/W3 cutouts, 3x80x80 -> (galaxy, quasar, star).",
        "IICnet, WISE images (seeds/000_1870c42ba758b26b.txt)",
    ),
    "hrcelestialnet": (
        "hrcelestialnet", (InputKind.RAW_EXPOSURE,), "hst_raw_2048x4096", 4, 4, False,
        "HR-CelestialNet on trimmed raw HST ACS/WFC or WFC3/UVIS chips, 1x2048x4096 -> (galaxy, nebula_star_cluster).",
        "HR-CelestialNet, raw HST exposures (seeds/003_f04b300b10439c25.txt)",
    ),
}


def write_seeded(name: str, cards_dir: Path = CARDS_DIR, weights_dir: Path = WEIGHTS_DIR, seed: int = INIT_SEED) -> ModelCard:
    """Initialise ``name`` from ``seed``, write its weights (if shipped) and an untrained card."""
    network, kinds, preprocessing, max_batch, opt_batch, ship_file, description, paper = UNTRAINED_CARDS[name]
    spec = NETWORKS[network]
    torch.manual_seed(seed)
    model = build_network(network)
    if ship_file:
        weights_dir.mkdir(parents=True, exist_ok=True)
        path = weights_dir / f"{name}.pt"
        torch.save(model.state_dict(), path)
        weights_file, sha = path.name, file_sha256(path)
    else:
        weights_file, sha = "", state_sha256(model.state_dict())
    card = ModelCard(
        name=name,
        version="0.0.0-untrained",
        network=network,
        trained=False,
        input_kinds=kinds,
        preprocessing=preprocessing,
        labels=spec.labels,
        contract=InputContract("input", "probabilities", spec.input_shape, spec.labels, "float32", max_batch, opt_batch),
        weights_file=weights_file,
        weights_sha256=sha,
        init_seed=seed,
        training={"data": _UNTRAINED, "provenance": f"torch.manual_seed({seed}) + default init, torch {torch.__version__}",
                  "architecture_source": paper},
        evaluation={"status": "not evaluated (untrained)"},
        description=description,
    )
    cards_dir.mkdir(parents=True, exist_ok=True)
    write_card(card, cards_dir / f"{name}.toml")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=sorted(UNTRAINED_CARDS))
    args = parser.parse_args(argv)
    for name in args.names:
        card = write_seeded(name)
        print(f"{card.name}: {card.weights_file or '(seeded, no file)'} sha256={card.weights_sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
