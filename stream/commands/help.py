"""Help that a person can act on: examples for every subcommand, defaults shown, choices listed.

:func:`polish` runs once over the built parser (from :func:`stream.cli.build_parser`):

* every subcommand gets the :class:`HelpFormatter` (descriptions and epilogs keep their line
  breaks; an option's default is appended when it is a real value and the help does not say it
  already; choices hidden behind a metavar are listed);
* a subcommand whose epilog has no ``examples:`` section gets the one in :data:`EXAMPLES`;
* an option without help text gets the one in :data:`FILLED_HELP` (options added by modules
  that other work is changing at the same time; each entry can move beside its option later).
"""
from __future__ import annotations

import argparse

__all__ = ["HelpFormatter", "EXAMPLES", "FILLED_HELP", "polish"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps line breaks; shows meaningful defaults and choices an option's metavar hides."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower():
            return text
        if action.choices and action.metavar and not isinstance(action, argparse._SubParsersAction):
            text += f" (choices: {', '.join(map(str, action.choices))})"
        default = action.default
        shown = default not in (None, False, argparse.SUPPRESS, "") and not isinstance(action, argparse._StoreTrueAction)
        if shown and action.option_strings:
            text += " (default: %(default)s)"
        return text


EXAMPLES: dict[str, str] = {
    "demo": """\
examples:
  survey-classifier demo                        embedded stack, the bundled night, a summary (logs go to a file it names)
  survey-classifier demo --backend openvino --pngs 12 --out var/demo-ov""",
    "stack": """\
examples:
  survey-classifier stack up                    broker + Redis on free ports until Ctrl-C; writes var/stack.env (run, replay, subscribe read it)
  survey-classifier stack up --kafka-port 9092 --redis-port 6379 --topics alerts,classified,classified-dead-letter""",
    "inspect": """\
examples:
  survey-classifier inspect schemas/samples/ztf                 one JSON line per alert, reasons for bad ones
  survey-classifier inspect night.tar.gz | jq -r .alert_id
  survey-classifier inspect rubin/ --schema-registry https://registry.example.org""",
    "replay": """\
examples:
  survey-classifier replay night.tar.gz --topic alerts                       as fast as possible
  survey-classifier replay night/ --topic alerts --speed 60                  recorded cadence, 60x faster, time-ordered
  survey-classifier replay schemas/samples/ztf --speed 60 --max-gap 2        a multi-night folder: idle gaps capped at 2 s
  survey-classifier replay night/ --topic alerts --multiply 20 --rate 2000   load test with fresh ids
  survey-classifier replay night/ --skip 1200                                resume after an interrupted replay""",
    "engines": """\
examples:
  survey-classifier engines build                              ONNX + every backend this host runs, smoke-tested
  survey-classifier engines build --backend tensorrt --models all
  survey-classifier engines list                               built artefacts with their provenance
  survey-classifier engines describe                           parameters, MACs, input and output shapes

actions: build exports and builds engines; list shows what is built; describe sizes the networks.""",
    "train": """\
examples:
  survey-classifier train realbogus --data stamps/ --epochs 20 --out var/train/rb
  survey-classifier train realbogus --synthetic 20000 --data ztf_alerts/ --seed 1   injected into your ZTF alerts
  survey-classifier train iicnet --data cutouts.h5 --labels cutouts.csv --group-column objid""",
    "evaluate": """\
examples:
  survey-classifier evaluate realbogus --data stamps/ --report var/report/rb
  survey-classifier evaluate iicnet --synthetic 3000 --seed 7""",
    "classify": """\
examples:
  survey-classifier classify schemas/samples/ztf                       offline scoring, one JSON line per input
  survey-classifier classify night.tar.gz --backend onnxruntime --agreement-report var/agreement
  survey-classifier classify frames/ --models hrcelestialnet --allow-untrained""",
    "stamps": """\
examples:
  survey-classifier stamps night.tar.gz --label-score drb --threshold 0.5 --out stamps/
  survey-classifier stamps alerts/ --labels vetted.csv --label-column label --out stamps/""",
}

#: (subcommand, option dest) -> help text for options registered without one.
FILLED_HELP: dict[tuple[str, str], str] = {
    ("demo", "backend"): "inference backend",
    ("stack", "partitions"): "partitions of the --topics created",
    ("engines", "action"): "build, list or describe (see below)",
    ("train", "epochs"): "passes over the training set",
    ("train", "batch_size"): "examples per optimiser step",
    ("train", "lr"): "learning rate",
    ("train", "dropout"): "dropout probability of the network's dropout layers",
    ("train", "seed"): "random seed (split, initialisation, augmentation)",
    ("evaluate", "device"): "cpu or cuda[:N]",
    ("evaluate", "threads"): "torch CPU threads",
    ("classify", "batch_size"): "inputs scored per engine call",
}


def polish(parser: argparse.ArgumentParser) -> None:
    """Apply the formatter, examples and filled help texts to every subcommand of ``parser``."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in action.choices.items():
            sub.formatter_class = HelpFormatter
            if name in EXAMPLES and "examples:" not in (sub.epilog or ""):
                sub.epilog = f"{EXAMPLES[name]}\n\n{sub.epilog}" if sub.epilog else EXAMPLES[name]
            for option in sub._actions:
                if not option.help and (name, option.dest) in FILLED_HELP:
                    option.help = FILLED_HELP[(name, option.dest)]
