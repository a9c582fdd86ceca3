"""What the ``train`` and ``evaluate`` commands run, so the CLI only parses and prints.

* :func:`network_kwargs`: constructor arguments of the network a run trains or evaluates (the
  reduced, binned HR-CelestialNet);
* :func:`run_data`: the examples of a run, either the user's labelled data or one of this
  project's simulated sets (engines/training/README.md), with the notes the report carries;
* :func:`evaluate_model`: score a network (a ``train`` output or the card's shipped weights) on
  such data and write the papers' figures.

Both commands share one synthetic-data rule: realbogus injects into real ZTF alerts found under
the data path (``--data``, required: no default points outside the checkout); iicnet simulates N WISE cutouts; hrcelestialnet
simulates raw ACS/WFC frames of ``N // (2 * views_per_body)`` bodies per class (at least 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.networks import NETWORKS
from engines.networks.hrcelestial import HRCELESTIAL_INPUT
from engines.registry import load_network, load_registry
from engines.training.datasets import load_labelled
from engines.training.evaluate import write_report
from engines.training.recipes import (
    SYNTHETIC_NOTE,
    _reorder_to_network,
    load_trained,
    predict,
    prepare_inputs,
    synthetic_hst,
    synthetic_realbogus,
    synthetic_wise,
)

__all__ = ["REALBOGUS_SYNTHETIC_NEEDS_DATA", "RunData", "network_kwargs", "run_data", "evaluate_model"]

#: realbogus ``--synthetic N`` injects into real ZTF alerts: where they are is the user's to say.
REALBOGUS_SYNTHETIC_NEEDS_DATA = "realbogus --synthetic N injects into real ZTF alerts: give --data PATH (a folder of ZTF alerts)"


def network_kwargs(model: str, binning: int) -> dict[str, Any]:
    """Constructor arguments of the network a run trains (reduced HR-CelestialNet: binned input)."""
    if model == "hrcelestialnet":
        if binning not in (1, 2, 4):
            raise ValueError(f"--binning must be 1, 2 or 4, not {binning}")
        h, w = HRCELESTIAL_INPUT[1:]
        return {"input_hw": [h // binning, w // binning], "first_pool": 4 // binning}
    return {}


@dataclass(frozen=True)
class RunData:
    """The examples of one run, how to describe them in its record, and its report's notes."""

    data: Any
    description: dict[str, Any]
    #: True when the examples are network inputs already (simulated HST frames, binned).
    preprocessed: bool = False
    notes: list[str] = field(default_factory=list)


def run_data(network: str, *, purpose: str, data: Path | None = None, labels: Path | None = None,
             group_column: str | None = None, synthetic: int | None = None, seed: int = 0,
             views_per_body: int = 3, binning: int = 4) -> RunData:
    """The user's labelled ``data`` or, with ``synthetic`` = N, N simulated examples.

    ``purpose`` ("train" or "evaluate") picks the note about what the figures mean. Raises
    ``ValueError`` when neither is given, :class:`engines.training.ztf_files.TrainingDataError`
    for unusable data.
    """
    if synthetic is not None:
        if network == "realbogus":
            if data is None:
                raise ValueError(REALBOGUS_SYNTHETIC_NEEDS_DATA)
            images, description = synthetic_realbogus(data, synthetic, seed)
            return RunData(images, description, notes=[SYNTHETIC_NOTE])
        if network == "iicnet":
            images, description = synthetic_wise(synthetic, seed)
            return RunData(images, description, notes=[SYNTHETIC_NOTE])
        views = max(1, views_per_body)
        images, description = synthetic_hst(max(2, synthetic // (2 * views)), views, seed, binning)
        return RunData(images, description, preprocessed=True, notes=[SYNTHETIC_NOTE])
    if data is None:
        raise ValueError("give --data PATH (labelled data) or --synthetic N")
    images = load_labelled(data, labels_csv=labels, group_column=group_column)
    if purpose == "train":
        description = {"source": str(data), "synthetic": False, "class_names": list(images.class_names),
                       "group_column": group_column}
        note = (f"Trained and tested on the user's data at {data}; test = held-out groups "
                f"({'by ' + group_column if group_column else 'each file its own group'}).")
    else:
        description = {"source": str(data), "synthetic": False}
        note = (f"Evaluated on {data}: every example scored; the figures mean something only if "
                f"the weights never saw these examples or their groups.")
    return RunData(images, description, notes=[note])


def evaluate_model(model: str, *, report: Path, weights: Path | None = None, binning: int = 4,
                   threshold: float | None = None, device: str = "cpu", cards_dir: Path | None = None,
                   weights_dir: Path | None = None, **data_options: Any) -> tuple[dict, Any]:
    """Score ``model`` (``weights``, else the card's shipped weights, sha256 checked) on
    :func:`run_data` (``data_options``) and write the report; returns (metrics, report paths).
    A registered model is scored with its own label set, whatever its class count."""
    if weights is not None:
        network_name = model
        kwargs = network_kwargs(network_name, binning)
        network = load_trained(network_name, weights, kwargs)
        weights_id: dict[str, Any] = {"weights": str(weights)}
        labels: tuple[str, ...] | None = None     # the network's own labels
    else:
        registry = load_registry(cards_dir, weights_dir)
        card = registry.card(model)
        network_name = card.network
        kwargs = dict(card.network_args)
        network = load_network(card, registry.weights_dir)
        weights_id = {"card": card.name, "version": card.version, "weights_sha256": card.weights_sha256,
                      "trained": card.trained}
        labels = card.labels        # a registered model's own label set (e.g. a user's two classes)
    spec = NETWORKS[network_name]
    input_shape = (spec.input_shape[0], *kwargs["input_hw"]) if kwargs.get("input_hw") else spec.input_shape
    run = run_data(network_name, purpose="evaluate", binning=binning, **data_options)
    data = _reorder_to_network(network_name, run.data, labels)
    inputs = prepare_inputs(network_name, data, input_shape, run.preprocessed, binning)
    probabilities = predict(network, inputs, device=device)
    return write_report(report, "evaluation", f"{model}: evaluation", probabilities, data.labels, data.class_names,
                        notes=run.notes, threshold=threshold,
                        extra={**weights_id, "data_sha256": data.data_sha256, "examples": len(data)})
