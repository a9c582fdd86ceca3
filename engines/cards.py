"""Model cards: one TOML file per shipped model, read by the registry.

Format (``engines/cards/<name>.toml``; every key below is required unless marked optional)::

    name = "realbogus"                 # registry name, also the ONNX/engine file stem
    version = "0.1.0"                  # bump when the weights change
    network = "realbogus"              # engines.networks.NETWORKS key
    trained = false                    # false: seeded initial weights, refused unless allow_untrained
    input_kinds = ["difference_alert"] # schemas.alert.InputKind values this model scores
    preprocessing = "difference_stamps_69"   # engines.preprocess.PREPROCESSORS key
    labels = ["bogus", "real"]         # output columns, in order
    description = "..."                # optional
    surveys = ["ztf"]                  # the surveys it was trained AND checked on: it scores only their
                                       # inputs (exposures: "exposure"); [] runs it nowhere unless
                                       # engine.run_unvalidated names it (then its scores say so)
    real_bogus = true                  # optional: its "real" score is the record's real_bogus on those surveys
    default = true                     # optional: the version loaded by name (several versions may share a name)
    class_labels = ["hosted"]          # optional: labels that go to a record's class_scores (default: all)
    class_prefix = "acai."             # optional: prefix of those class_scores keys (default: "<name>.")
    passes_bar = true                  # optional (default false): its held-out figures pass the bar for
                                       # running by default (engines/cards/README.md, "The default bar"):
                                       # an empty engine.models runs exactly the cards that pass
    bar = "..."                        # the bar's line for this kind of model and the figure that meets
                                       # (or misses) it; required when passes_bar = true; an untrained
                                       # card never runs by default whatever it says

    [input]                            # the engines.contract.InputContract
    name = "input"
    output = "probabilities"
    shape = [3, 69, 69]
    dtype = "float32"
    max_batch = 1024
    opt_batch = 256
    feature_name = "features"          # optional: a second input (N, feature_count) beside the image
    feature_count = 25                 # optional (default 0: no feature input)
    output_activation = "softmax"      # optional: "none" when the network gives probabilities

    [weights]
    file = "realbogus.pt"              # in engines/weights/; "" = rebuild from init_seed
    files = ["braai/d6_m7.h5"]         # optional, imported Keras networks: their files, in order;
                                       # then sha256 is files_sha256 over them
    sha256 = "..."                     # of the file; of the state (state_sha256) when file = ""
    init_seed = 20261122               # optional; the seed of untrained weights, or of the base of a delta file
    base_sha256 = "..."                # optional, delta files: state_sha256 of the seeded base network

    [network_args]                     # optional: keyword arguments of the network constructor

    [survey_figures]                   # one line per survey: what it was checked on there and how it did
    ztf = "ROC AUC 0.92 vs drb on 383 held-out alerts"  # (a survey it was not checked on may say so)

    [training]                         # free-form strings: data set, its provenance, recipe
    [evaluation]                       # free-form: metric name -> number or string

    [calibration]                      # optional, last: one line per survey it scores: what is known of
    ztf = "ECE 0.08 on held-out ..."   # its score's calibration there, or why it cannot be measured

The training helper replaces ``[weights]``, sets ``trained = true`` and fills ``[training]``
and ``[evaluation]``; :func:`write_card` writes this format back.
"""
from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.contract import EngineError, InputContract
from schemas.alert import InputKind

__all__ = ["ModelCard", "load_card", "card_to_toml", "write_card"]


@dataclass(frozen=True)
class ModelCard:
    """What the registry knows about one model (see the module docstring for the file format)."""

    name: str
    version: str
    network: str
    trained: bool
    input_kinds: tuple[InputKind, ...]
    preprocessing: str
    labels: tuple[str, ...]
    contract: InputContract
    weights_file: str
    weights_sha256: str
    init_seed: int | None = None
    base_sha256: str = ""
    network_args: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    path: Path | None = None
    surveys: tuple[str, ...] = ()
    default: bool = True
    weights_files: tuple[str, ...] = ()
    class_labels: tuple[str, ...] | None = None
    class_prefix: str = ""
    real_bogus: bool = False
    survey_figures: Mapping[str, str] = field(default_factory=dict)
    passes_bar: bool = False
    bar: str = ""
    calibration: Mapping[str, str] = field(default_factory=dict)

    def applies_to_survey(self, survey: str) -> bool:
        """Whether this model was trained and checked on inputs of ``survey`` (so scores them)."""
        return survey in self.surveys

    @property
    def class_score_keys(self) -> dict[str, str]:
        """Output label -> key in a record's ``class_scores`` (labels that are not class scores
        absent): ``<prefix><label>``, the prefix being ``<name>.`` unless the card names one, so
        each model's scores stay grouped (``alertclass.star`` beside ``acai.variable``). A
        real/bogus model puts none there: its score is ``real_bogus``."""
        if self.real_bogus:
            return {}
        labels = self.labels if self.class_labels is None else self.class_labels
        prefix = self.class_prefix or f"{self.name}."
        return {label: f"{prefix}{label}" for label in labels}


def load_card(path: str | Path) -> ModelCard:
    """Parse and validate one card; EngineError names the file and the problem."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        inp = doc["input"]
        weights = doc["weights"]
        contract = InputContract(
            input_name=str(inp["name"]),
            output_name=str(inp["output"]),
            shape=tuple(int(v) for v in inp["shape"]),
            labels=tuple(str(v) for v in doc["labels"]),
            dtype=str(inp.get("dtype", "float32")),
            max_batch=int(inp["max_batch"]),
            opt_batch=int(inp["opt_batch"]),
            feature_name=str(inp.get("feature_name", "")),
            feature_count=int(inp.get("feature_count", 0)),
            output_activation=str(inp.get("output_activation", "softmax")),
        )
        card = ModelCard(
            name=str(doc["name"]),
            version=str(doc["version"]),
            network=str(doc["network"]),
            trained=_as_bool(doc["trained"], "trained"),
            input_kinds=tuple(InputKind(v) for v in doc["input_kinds"]),
            preprocessing=str(doc["preprocessing"]),
            labels=contract.labels,
            contract=contract,
            weights_file=str(weights["file"]),
            weights_sha256=str(weights["sha256"]),
            init_seed=int(weights["init_seed"]) if "init_seed" in weights else None,
            base_sha256=str(weights.get("base_sha256", "")),
            network_args=dict(doc.get("network_args", {})),
            training=dict(doc.get("training", {})),
            evaluation=dict(doc.get("evaluation", {})),
            description=str(doc.get("description", "")),
            path=path,
            surveys=tuple(str(v) for v in doc["surveys"]),
            default=_as_bool(doc.get("default", True), "default"),
            weights_files=tuple(str(v) for v in weights.get("files", ())),
            class_labels=tuple(str(v) for v in doc["class_labels"]) if "class_labels" in doc else None,
            class_prefix=str(doc.get("class_prefix", "")),
            real_bogus=_as_bool(doc.get("real_bogus", False), "real_bogus"),
            survey_figures={str(k): str(v) for k, v in doc.get("survey_figures", {}).items()},
            passes_bar=_as_bool(doc.get("passes_bar", False), "passes_bar"),
            bar=str(doc.get("bar", "")),
            calibration={str(k): str(v) for k, v in doc.get("calibration", {}).items()},
        )
    except KeyError as exc:
        why = (" (every card names the surveys it was trained and checked on, e.g. surveys = [\"ztf\"])"
               if exc.args == ("surveys",) else "")
        raise EngineError(f"bad model card {path}: missing key {exc}{why}") from exc
    except (OSError, tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
        raise EngineError(f"bad model card {path}: {type(exc).__name__}: {exc}") from exc
    if len(card.contract.shape) != 3:
        raise EngineError(f"bad model card {path}: input shape must be [C, H, W]")
    if card.contract.feature_count < 0 or bool(card.contract.feature_count) != bool(card.contract.feature_name):
        raise EngineError(f"bad model card {path}: feature_name and feature_count > 0 go together")
    if card.contract.output_activation not in ("softmax", "none"):
        raise EngineError(f"bad model card {path}: output_activation must be 'softmax' or 'none'")
    if card.class_labels is not None and not set(card.class_labels) <= set(card.labels):
        raise EngineError(f"bad model card {path}: class_labels {card.class_labels} are not all in labels {card.labels}")
    if card.passes_bar and not card.bar.strip():
        raise EngineError(f"bad model card {path}: passes_bar = true needs a bar line (the bar and the figure that meets it)")
    if card.real_bogus and "real" not in card.labels:
        raise EngineError(f"bad model card {path}: real_bogus = true needs a 'real' label, labels are {card.labels}")
    return card


def _as_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"{key!r} must be a TOML boolean, got {value!r}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, InputKind):
        return _toml_value(value.value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def card_to_toml(card: ModelCard) -> str:
    """The card in the documented TOML format (round-trips through :func:`load_card`)."""
    c = card.contract
    lines = [
        f"name = {_toml_value(card.name)}",
        f"version = {_toml_value(card.version)}",
        f"network = {_toml_value(card.network)}",
        f"trained = {_toml_value(card.trained)}",
        f"input_kinds = {_toml_value(list(card.input_kinds))}",
        f"preprocessing = {_toml_value(card.preprocessing)}",
        f"labels = {_toml_value(list(card.labels))}",
        f"description = {_toml_value(card.description)}",
    ]
    lines.append(f"surveys = {_toml_value(list(card.surveys))}")
    if card.real_bogus:
        lines.append("real_bogus = true")
    if not card.default:
        lines.append("default = false")
    if card.class_labels is not None:
        lines.append(f"class_labels = {_toml_value(list(card.class_labels))}")
    if card.class_prefix:
        lines.append(f"class_prefix = {_toml_value(card.class_prefix)}")
    if card.passes_bar:
        lines.append("passes_bar = true")
    if card.bar:
        lines.append(f"bar = {_toml_value(card.bar)}")
    lines += [
        "",
        "[input]",
        f"name = {_toml_value(c.input_name)}",
        f"output = {_toml_value(c.output_name)}",
        f"shape = {_toml_value(list(c.shape))}",
        f"dtype = {_toml_value(c.dtype)}",
        f"max_batch = {c.max_batch}",
        f"opt_batch = {c.opt_batch}",
    ]
    if c.feature_count:
        lines += [f"feature_name = {_toml_value(c.feature_name)}", f"feature_count = {c.feature_count}"]
    if c.output_activation != "softmax":
        lines.append(f"output_activation = {_toml_value(c.output_activation)}")
    lines += [
        "",
        "[weights]",
        f"file = {_toml_value(card.weights_file)}",
        f"sha256 = {_toml_value(card.weights_sha256)}",
    ]
    if card.weights_files:
        lines.append(f"files = {_toml_value(list(card.weights_files))}")
    if card.init_seed is not None:
        lines.append(f"init_seed = {card.init_seed}")
    if card.base_sha256:
        lines.append(f"base_sha256 = {_toml_value(card.base_sha256)}")
    tables: list[tuple[str, Mapping[str, Any]]] = [
        ("network_args", card.network_args), ("survey_figures", card.survey_figures), ("training", card.training),
        ("evaluation", card.evaluation)]
    if card.calibration:
        tables.append(("calibration", card.calibration))
    for table, values in tables:
        lines += ["", f"[{table}]"] + [f"{key} = {_toml_value(val)}" for key, val in values.items()]
    return "\n".join(lines) + "\n"


def write_card(card: ModelCard, path: str | Path) -> Path:
    """Write ``card`` to ``path`` (atomically) and return the path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(card_to_toml(card), encoding="utf-8")
    tmp.replace(path)
    return path
