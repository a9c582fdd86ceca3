"""``survey-classifier subscribe --topic classified``: read, filter and save classified records.

Wires :class:`stream.subscribe.reader.ClassifiedReader` (Kafka), the filters and the writers of
:mod:`stream.subscribe.output`. On a terminal the kept records scroll by as a table; otherwise
(piped, no ``--output``) they are JSON lines on stdout. A summary (read, kept, undecodable,
PNGs, and each partition's position, end offset and lag) goes to stderr as one JSON line at the
end; ``--lag`` adds a table of the partitions. Exit codes: 0, 1 (topic errors, a read failing
mid-stream), 2 (bad options, a broker that does not answer within --connect-timeout, a topic
whose first messages are not classified records: one line naming what they are), 130 (Ctrl-C;
files written so far are closed properly).

fink-client habits: ``--list-topics``, ``--dump-schema``, ``--group ID`` (resume from the
group's committed offsets) and ``--save-alerts DIR`` (the original packets of kept alerts).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from stream.errors import ServiceUnreachable, UsageError

__all__ = ["register"]

log = structlog.get_logger(__name__)

_EPILOG = """\
examples:
  survey-classifier subscribe --topic classified --until-end            table on a terminal, JSON lines when piped
  survey-classifier subscribe --min-real-bogus 0.8 --survey ztf --until-end --output kept.parquet
  survey-classifier subscribe --where "real_bogus > 0.9 and band in ('g', 'r')" --png-dir pngs --png-max 20
  survey-classifier subscribe --group my-night --output kept.jsonl      resumes where my-night stopped
  survey-classifier subscribe --save-alerts originals --min-real-bogus 0.9 --until-end
  survey-classifier subscribe --list-topics
  survey-classifier subscribe --dump-schema > classified.avsc

filters (all given must hold):
  --min-real-bogus 0.8         our real_bogus >= 0.8 (records without it are dropped; --min-rb is
                               the same flag). survey_scores['drb'] is ZTF's own score, a comparison.
                               real_bogus is not calibrated; each survey's comes from its own model
                               (real_bogus_model), so cut per survey with that model's card thresholds
                               (chosen on validation; recall on held-out data in brackets):
                                 ztf   realbogus        0.50 recall 0.95 (0.87), 0.17 recall 0.99 (0.97)
                                 rubin rubin_realbogus  0.81 recall 0.95 (0.69), 0.27 recall 0.99 (1.00)
                               e.g. --survey ztf --min-rb 0.50; against braai / Rubin's reliability,
                               not human vetting; Rubin from 41 alerts (research/reports/calibration)
  --class galaxy --min-prob .7 class_scores['galaxy'] >= 0.7   (--class alone: top class is galaxy)
  --survey ztf|rubin|exposure, --model NAME, --trained / --untrained (unknown survey or class
  names are refused with the list of known ones)
  --where EXPR                 e.g. "real_bogus > 0.8 and survey == 'ztf'",
                               "class_scores['galaxy'] >= 0.7 or band in ('g', 'r')",
                               "not untrained and 'braai' in models"
  fields: survey kind alert_id object_id ra dec mjd band real_bogus untrained schema_version
  classifier_version source_topic source_partition source_offset source_timestamp_ms
  ingested_ms classified_ms; from v1.2 mjd_time_scale candid dia_source_id dia_object_id
  magpsf sigmapsf fid isdiffpos psf_flux psf_flux_err is_negative ("magpsf < 18.5");
  maps class_scores[...] survey_scores[...]; models (names). Units: stream/README.md, "Reading the
  classified topic" (mjd is TAI; magpsf AB mag; psf_flux nJy).
  Operators: == != < <= > >= in, not in, and, or, not, parentheses; literals: numbers,
  'strings', true false null. A comparison with a missing value is false.

table (on a terminal): latency_ms = classified_ms - source alert timestamp; a model name
followed by * ran with untrained placeholder weights (its scores mean nothing).

outputs: --output FILE.jsonl | .csv | .parquet | .avro (the .jsonl and .avro dumps can be
replayed with `survey-classifier replay`); --png-dir DIR writes science/template/difference
cutouts with the scores for kept alerts, fetching each original alert from its source topic;
with --png-max N the subscription stops after the Nth PNG. --save-alerts DIR writes each kept
alert's original packet (fetched the same way) as DIR/<survey>_<alert_id>.avro, replayable.

records framed with a schema registry's ids (the service's kafka.output_schema_registry_url)
are read with --schema-registry URL (default: that setting); records with the fixed ids
(100*major+minor) read either way.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("subscribe", help="read a classified topic: filter, show, save (JSONL/CSV/Parquet), draw PNGs",
                       description="Read classified records, keep those matching the filters, and show or save them.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topic", default=None, help="classified topic (default: the configured output topic)")
    p.add_argument("--config", help="TOML settings file (Kafka connection and client properties)")
    p.add_argument("--bootstrap-servers", default=None, help="Kafka brokers (default: settings / KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--schema-registry", default=None, metavar="URL",
                   help="registry for records framed with registry ids (default: kafka.output_schema_registry_url)")
    p.add_argument("--group", default=None, metavar="ID",
                   help="consumer group: resume from its committed offsets and commit as records are handled "
                        "(default: none, read from --from/--since)")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the broker's first answer before giving up (default 10)")
    p.add_argument("--list-topics", action="store_true", help="list the cluster's topics with partition counts, and exit")
    p.add_argument("--dump-schema", action="store_true", help="print the classified record's Avro schema (latest), and exit")
    p.add_argument("--lag", action="store_true",
                   help="at the end, print each partition's position, end offset and lag on stderr (also in the JSON summary)")
    f = p.add_argument_group("filters")
    f.add_argument("--where", default=None, metavar="EXPR", help="filter expression (see below)")
    f.add_argument("--min-real-bogus", "--min-rb", dest="min_real_bogus", type=float, default=None, metavar="P",
                   help="keep our real_bogus >= P (default: no cut); thresholds per survey below "
                        "(ztf 0.50 / rubin 0.81 for recall 0.95 on validation)")
    f.add_argument("--class", dest="class_label", default=None, metavar="LABEL", help="keep this class (see --min-prob)")
    f.add_argument("--min-prob", type=float, default=None, metavar="P", help="with --class: that class's probability >= P")
    f.add_argument("--survey", default=None, help="ztf, rubin or exposure (default: all)")
    f.add_argument("--model", default=None, metavar="NAME", help="keep records scored by this model (default: any)")
    trained = f.add_mutually_exclusive_group()
    trained.add_argument("--trained", dest="untrained", action="store_false", default=None, help="only records of trained models")
    trained.add_argument("--untrained", dest="untrained", action="store_true", help="only records with untrained placeholders")
    s = p.add_argument_group("where to start and stop")
    start = s.add_mutually_exclusive_group()
    start.add_argument("--from", dest="start", choices=("earliest", "latest"), default=None,
                       help="where to start (default: earliest; with --group only where it has no committed offset)")
    start.add_argument("--since", default=None, metavar="TIME", help="ISO-8601 time (UTC if no zone) or Unix milliseconds")
    s.add_argument("--max", dest="max_records", type=int, default=None, metavar="N", help="stop after N kept records (default: no limit)")
    s.add_argument("--until-end", action="store_true", help="stop at the end of the topic instead of following it")
    o = p.add_argument_group("output")
    o.add_argument("--output", default=None, metavar="FILE", help=".jsonl, .csv, .parquet or .avro (default: none)")
    o.add_argument("--png-dir", default=None, metavar="DIR", help="write PNG cutout triplets of kept alerts here")
    o.add_argument("--alerts-topic", default=None, metavar="TOPIC",
                   help="topic holding the original alerts for --png-dir (default: each record's source_topic)")
    o.add_argument("--png-max", type=int, default=None, metavar="N", help="stop after N PNGs (default: no limit)")
    o.add_argument("--save-alerts", default=None, metavar="DIR", help="write the original packet of each kept alert here")
    o.add_argument("--quiet", action="store_true", help="no table / JSON lines on stdout")
    p.set_defaults(func=_run)


class _AlertSaver:
    """Fetches the original packet of a kept alert from its source topic and writes it to a folder."""

    def __init__(self, bootstrap: str, client_config: dict, directory: Path, alerts_topic: str | None) -> None:
        from stream.subscribe.reader import AlertFetcher

        self.directory = directory
        self.alerts_topic = alerts_topic
        self.fetcher = AlertFetcher(bootstrap, client_config)
        self.written = 0
        self.failed = 0

    def __call__(self, record) -> None:
        from stream.subscribe.reader import SubscribeError

        if record.source_partition is None or record.source_offset is None or not (self.alerts_topic or record.source_topic):
            self.failed += 1
            return
        topic = self.alerts_topic or record.source_topic
        try:
            packet = self.fetcher.fetch(topic, record.source_partition, record.source_offset)
        except SubscribeError as exc:
            self.failed += 1
            log.warning("original_alert_not_saved", alert_id=record.alert_id, source_topic=topic,
                        source_partition=record.source_partition, source_offset=record.source_offset, error=str(exc))
            return
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{record.survey}_{record.alert_id}")
        (self.directory / f"{safe}.avro").write_bytes(packet)
        self.written += 1

    def close(self) -> None:
        self.fetcher.close()


class _PngMaker:
    """Fetches the original alert of a kept record, decodes it and draws its triplet."""

    def __init__(self, bootstrap: str, client_config: dict, directory: Path, alerts_topic: str | None, limit: int | None) -> None:
        from stream.subscribe.reader import AlertFetcher

        self.directory = directory
        self.alerts_topic = alerts_topic
        self.limit = limit
        self.fetcher = AlertFetcher(bootstrap, client_config)
        self.written = 0
        self.failed = 0

    def __call__(self, record) -> None:
        from schemas.decode import decode_message
        from schemas.decode.errors import DecodeError
        from stream.subscribe.output import png_name, render_triplet
        from stream.subscribe.reader import SubscribeError

        if self.limit is not None and self.written >= self.limit:
            return
        if record.kind != "difference_alert" or record.source_partition is None or record.source_offset is None:
            return
        topic = self.alerts_topic or record.source_topic
        try:
            items = decode_message(self.fetcher.fetch(topic, record.source_partition, record.source_offset))
            alerts = [a for a in items if str(getattr(a, "alert_id", "")) == record.alert_id] or items
            render_triplet(alerts[0], record, self.directory / png_name(record))
            self.written += 1
        except (SubscribeError, DecodeError, IndexError, AttributeError) as exc:
            self.failed += 1
            log.warning("no_png_for_record", alert_id=record.alert_id, source_topic=topic,
                        source_partition=record.source_partition, source_offset=record.source_offset, error=str(exc))

    def close(self) -> None:
        self.fetcher.close()


def _dump_schema() -> int:
    from schemas.classified_record import classified_schema

    print(json.dumps(classified_schema(), indent=2))
    return 0


def _list_topics(bootstrap: str, client_config: dict) -> int:
    from stream.subscribe.reader import SubscribeError, list_topics

    try:
        topics = list_topics(bootstrap, client_config)
    except SubscribeError as exc:
        print(f"subscribe: {exc}", file=sys.stderr)
        return 1
    width = max((len(t) for t in topics), default=5)
    print(f"{'topic':<{width}}  partitions")
    for name, partitions in topics.items():
        print(f"{name:<{width}}  {partitions}")
    return 0


@dataclass
class _Sinks:
    """Where kept records go: the writers (file, terminal table or JSON lines), PNGs, saved alerts."""

    writers: list[Any] = field(default_factory=list)
    png: _PngMaker | None = None
    saver: _AlertSaver | None = None

    def take(self, record: Any) -> bool:
        """Hand ``record`` to every sink; False once ``--png-max`` PNGs are written (stop)."""
        for writer in self.writers:
            writer.write(record)
        if self.saver is not None:
            self.saver(record)
        if self.png is not None:
            self.png(record)
            if self.png.limit is not None and self.png.written >= self.png.limit:
                log.info("png_max_reached", pngs=self.png.written, note="subscription stopped (--png-max)")
                return False
        return True


def _open_sinks(args: argparse.Namespace, stack: ExitStack, bootstrap: str, client_config: dict) -> _Sinks:
    """The sinks the options ask for, each closed by ``stack`` on the way out."""
    from stream.subscribe.output import JsonlWriter, TableWriter, open_writer

    sinks = _Sinks()
    if args.output:
        sinks.writers.append(stack.enter_context(closing(open_writer(args.output))))
    if not args.quiet:
        if sys.stdout.isatty():
            sinks.writers.append(stack.enter_context(closing(TableWriter(sys.stdout))))
        elif not args.output:
            sinks.writers.append(stack.enter_context(closing(JsonlWriter(sys.stdout))))
    if args.png_dir:
        directory = Path(args.png_dir)
        directory.mkdir(parents=True, exist_ok=True)
        sinks.png = stack.enter_context(closing(_PngMaker(bootstrap, client_config, directory, args.alerts_topic,
                                                          args.png_max)))
    if args.save_alerts:
        folder = Path(args.save_alerts)
        folder.mkdir(parents=True, exist_ok=True)
        sinks.saver = stack.enter_context(closing(_AlertSaver(bootstrap, client_config, folder, args.alerts_topic)))
    return sinks


def _filter(args: argparse.Namespace) -> Any:
    """The record filter the options describe (a user's mistake in them is a UsageError)."""
    from stream.subscribe.filters import FilterError, flag_predicate
    from stream.subscribe.known import check_class_label, check_survey

    try:
        survey = check_survey(args.survey) if args.survey is not None else None
        class_label = check_class_label(args.class_label) if args.class_label is not None else None
        return flag_predicate(min_rb=args.min_real_bogus, class_label=class_label, min_prob=args.min_prob,
                              survey=survey, model=args.model, untrained=args.untrained)
    except (FilterError, ValueError) as exc:
        raise UsageError(str(exc)) from exc


def _reachable_broker(args: argparse.Namespace, settings: Any) -> tuple[str, dict]:
    """The broker to read from and its client properties, once it has answered."""
    from stream.health import probe_broker

    bootstrap = args.bootstrap_servers or settings.kafka.bootstrap_servers
    if not bootstrap:
        raise UsageError("no Kafka named: pass --bootstrap-servers or set KAFKA_BOOTSTRAP_SERVERS "
                         "(`survey-classifier stack up` in this directory starts a local one that subscribe finds)")
    client_config = dict(settings.kafka.client)
    unreachable = probe_broker({"bootstrap.servers": bootstrap, **client_config}, timeout_s=args.connect_timeout)
    if unreachable is not None:
        raise ServiceUnreachable(f"Kafka at {bootstrap} did not answer within {args.connect_timeout:g} s ({unreachable}): "
                                 f"check --bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS and that the broker is up")
    return bootstrap, client_config


def _run(args: argparse.Namespace) -> int:
    from stream.config import load_settings
    from stream.subscribe.filters import FilterError
    from stream.subscribe.output import OutputError
    from stream.subscribe.reader import ClassifiedReader, NotClassifiedTopic, SubscribeError

    if args.dump_schema:
        return _dump_schema()
    from stream.stack import with_stack_file

    settings = load_settings(args.config)  # a ConfigError is a UsageError
    if not args.bootstrap_servers:
        settings = with_stack_file(settings)  # a `stack up` running in this directory
    predicate = _filter(args)
    bootstrap, client_config = _reachable_broker(args, settings)
    if args.list_topics:
        return _list_topics(bootstrap, client_config)
    topic = args.topic or settings.kafka.output_topic
    registry = args.schema_registry if args.schema_registry is not None else settings.kafka.output_schema_registry_url
    with ExitStack() as stack:
        try:
            reader = ClassifiedReader(bootstrap, topic, where=args.where, predicate=predicate,
                                      start=args.since if args.since is not None else (args.start or "earliest"),
                                      until_end=args.until_end, max_records=args.max_records, client_config=client_config,
                                      schema_registry_url=registry or None, group_id=args.group)
            sinks = _Sinks()
            stack.callback(_close_and_summarise, reader, lambda: sinks, topic, args)  # closed last, after the sinks
            sinks = _open_sinks(args, stack, bootstrap, client_config)
            for record in reader:
                if not sinks.take(record):
                    break
        except (FilterError, OutputError) as exc:
            raise UsageError(str(exc)) from exc
        except NotClassifiedTopic as exc:
            args.no_summary = True  # the one line is the error
            raise UsageError(str(exc)) from exc
        except SubscribeError as exc:
            print(f"subscribe: {exc}", file=sys.stderr)
            return 1
    return 0


def _close_and_summarise(reader: Any, sinks: Callable[[], _Sinks], topic: str, args: argparse.Namespace) -> None:
    """Close the reader, then one JSON line on stderr: what was read, kept and written, and where each partition stands."""
    offsets = reader.offsets()
    reader.close()
    if getattr(args, "no_summary", False):
        return
    png, saver = sinks().png, sinks().saver
    lags = [o.lag for o in offsets if o.lag is not None]
    summary = {"topic": topic, "read": reader.stats.read, "kept": reader.stats.kept,
               "undecodable": reader.stats.undecodable, "output": args.output,
               "pngs": png.written if png else 0, "png_failures": png.failed if png else 0,
               "alerts_saved": saver.written if saver else 0, "alerts_not_saved": saver.failed if saver else 0,
               "group": args.group, "lag": sum(lags) if lags else None,
               "partitions": [{k: v for k, v in o.as_dict().items() if k != "topic"} for o in offsets]}
    if args.lag:
        print(_lag_table(offsets), file=sys.stderr, flush=True)
    print(json.dumps(summary, sort_keys=True), file=sys.stderr, flush=True)


def _lag_table(offsets: list[Any]) -> str:
    """partition / position / end / lag, one row per partition, ``-`` where unknown, and the total."""
    def cell(value: int | None) -> str:
        return "-" if value is None else str(value)

    rows = [("partition", "position", "end", "lag")]
    rows += [(str(o.partition), cell(o.position), cell(o.end), cell(o.lag)) for o in offsets]
    lags = [o.lag for o in offsets if o.lag is not None]
    rows.append(("total", "", "", cell(sum(lags) if lags else None)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
