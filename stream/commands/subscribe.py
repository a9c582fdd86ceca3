"""``survey-classifier subscribe --topic classified``: read, filter and save classified records.

Wires :class:`stream.subscribe.reader.ClassifiedReader` (Kafka), the filters and the writers of
:mod:`stream.subscribe.output`. On a terminal the kept records scroll by as a table; otherwise
(piped, no ``--output``) they are JSON lines on stdout. A summary (read, kept, undecodable,
PNGs) goes to stderr as one JSON line at the end. Exit codes: 0, 1 (broker / topic errors),
2 (bad options), 130 (Ctrl-C; files written so far are closed properly).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import structlog

__all__ = ["register"]

log = structlog.get_logger(__name__)

_EPILOG = """\
filters (all given must hold):
  --min-rb 0.8                 real_bogus >= 0.8 (records without a real/bogus score are dropped)
  --class galaxy --min-prob .7 class_scores['galaxy'] >= 0.7   (--class alone: top class is galaxy)
  --survey ztf, --model NAME, --trained / --untrained
  --where EXPR                 e.g. "real_bogus > 0.8 and survey == 'ztf'",
                               "class_scores['galaxy'] >= 0.7 or band in ('g', 'r')",
                               "not untrained and 'braai' in models"
  fields: survey kind alert_id object_id ra dec mjd band real_bogus untrained schema_version
  classifier_version source_topic source_partition source_offset source_timestamp_ms
  ingested_ms classified_ms; maps class_scores[...] survey_scores[...]; models (names).
  Operators: == != < <= > >= in, not in, and, or, not, parentheses; literals: numbers,
  'strings', true false null. A comparison with a missing value is false.

table (on a terminal): latency_ms = classified_ms - source alert timestamp; a model name
followed by * ran with untrained placeholder weights (its scores mean nothing).

outputs: --output FILE.jsonl | .csv | .parquet | .avro (the .jsonl and .avro dumps can be
replayed with `survey-classifier replay`); --png-dir DIR writes science/template/difference
cutouts with the scores for kept alerts, fetching each original alert from its source topic.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("subscribe", help="read a classified topic: filter, show, save (JSONL/CSV/Parquet), draw PNGs",
                       description="Read classified records, keep those matching the filters, and show or save them.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topic", default=None, help="classified topic (default: the configured output topic)")
    p.add_argument("--config", help="TOML settings file (Kafka connection and client properties)")
    p.add_argument("--bootstrap-servers", default=None, help="Kafka brokers (default: settings / KAFKA_BOOTSTRAP_SERVERS)")
    f = p.add_argument_group("filters")
    f.add_argument("--where", default=None, metavar="EXPR", help="filter expression (see below)")
    f.add_argument("--min-rb", type=float, default=None, metavar="P", help="keep real_bogus >= P")
    f.add_argument("--class", dest="class_label", default=None, metavar="LABEL", help="keep this class (see --min-prob)")
    f.add_argument("--min-prob", type=float, default=None, metavar="P", help="with --class: that class's probability >= P")
    f.add_argument("--survey", default=None, help="ztf or rubin")
    f.add_argument("--model", default=None, metavar="NAME", help="keep records scored by this model")
    trained = f.add_mutually_exclusive_group()
    trained.add_argument("--trained", dest="untrained", action="store_false", default=None, help="only records of trained models")
    trained.add_argument("--untrained", dest="untrained", action="store_true", help="only records with untrained placeholders")
    s = p.add_argument_group("where to start and stop")
    start = s.add_mutually_exclusive_group()
    start.add_argument("--from", dest="start", choices=("earliest", "latest"), default=None, help="default: earliest")
    start.add_argument("--since", default=None, metavar="TIME", help="ISO-8601 time (UTC if no zone) or Unix milliseconds")
    s.add_argument("--max", dest="max_records", type=int, default=None, metavar="N", help="stop after N kept records")
    s.add_argument("--until-end", action="store_true", help="stop at the end of the topic instead of following it")
    o = p.add_argument_group("output")
    o.add_argument("--output", default=None, metavar="FILE", help=".jsonl, .csv, .parquet or .avro")
    o.add_argument("--png-dir", default=None, metavar="DIR", help="write PNG cutout triplets of kept alerts here")
    o.add_argument("--alerts-topic", default=None, metavar="TOPIC",
                   help="topic holding the original alerts for --png-dir (default: each record's source_topic)")
    o.add_argument("--png-max", type=int, default=None, metavar="N", help="at most N PNGs")
    o.add_argument("--quiet", action="store_true", help="no table / JSON lines on stdout")
    p.set_defaults(func=_run)


class _PngMaker:
    """Fetches the original alert of a kept record, decodes it and draws its triplet."""

    def __init__(self, bootstrap: str, client_config: dict, directory: Path, alerts_topic: str | None, limit: int | None) -> None:
        from stream.subscribe.reader import AlertFetcher  # noqa: PLC0415

        self.directory = directory
        self.alerts_topic = alerts_topic
        self.limit = limit
        self.fetcher = AlertFetcher(bootstrap, client_config)
        self.written = 0
        self.failed = 0

    def __call__(self, record) -> None:
        from schemas.decode import decode_message  # noqa: PLC0415
        from schemas.decode.errors import DecodeError  # noqa: PLC0415
        from stream.subscribe.output import png_name, render_triplet  # noqa: PLC0415
        from stream.subscribe.reader import SubscribeError  # noqa: PLC0415

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


def _run(args: argparse.Namespace) -> int:
    from stream.config import ConfigError, load_settings  # noqa: PLC0415
    from stream.subscribe.filters import FilterError, flag_predicate  # noqa: PLC0415
    from stream.subscribe.output import JsonlWriter, OutputError, TableWriter, open_writer  # noqa: PLC0415
    from stream.subscribe.reader import ClassifiedReader, SubscribeError  # noqa: PLC0415

    try:
        settings = load_settings(args.config)
        predicate = flag_predicate(min_rb=args.min_rb, class_label=args.class_label, min_prob=args.min_prob,
                                   survey=args.survey, model=args.model, untrained=args.untrained)
    except (ConfigError, FilterError) as exc:
        print(f"subscribe: {exc}", file=sys.stderr)
        return 2
    bootstrap = args.bootstrap_servers or settings.kafka.bootstrap_servers
    if not bootstrap:
        print("subscribe: no Kafka named: pass --bootstrap-servers or set KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    topic = args.topic or settings.kafka.output_topic
    client_config = dict(settings.kafka.client)
    writers = []
    png = None
    reader = None
    try:
        reader = ClassifiedReader(bootstrap, topic, where=args.where, predicate=predicate,
                                  start=args.since if args.since is not None else (args.start or "earliest"),
                                  until_end=args.until_end, max_records=args.max_records, client_config=client_config)
        if args.output:
            writers.append(open_writer(args.output))
        if not args.quiet:
            if sys.stdout.isatty():
                writers.append(TableWriter(sys.stdout))
            elif not args.output:
                writers.append(JsonlWriter(sys.stdout))
        if args.png_dir:
            directory = Path(args.png_dir)
            directory.mkdir(parents=True, exist_ok=True)
            png = _PngMaker(bootstrap, client_config, directory, args.alerts_topic, args.png_max)
        for record in reader:
            for writer in writers:
                writer.write(record)
            if png is not None:
                png(record)
    except (FilterError, OutputError) as exc:
        print(f"subscribe: {exc}", file=sys.stderr)
        return 2
    except SubscribeError as exc:
        print(f"subscribe: {exc}", file=sys.stderr)
        return 1
    finally:
        for writer in writers:
            writer.close()
        if png is not None:
            png.close()
        if reader is not None:
            reader.close()
            summary = {"topic": topic, "read": reader.stats.read, "kept": reader.stats.kept,
                       "undecodable": reader.stats.undecodable, "output": args.output,
                       "pngs": png.written if png else 0, "png_failures": png.failed if png else 0}
            print(json.dumps(summary, sort_keys=True), file=sys.stderr, flush=True)
    return 0

