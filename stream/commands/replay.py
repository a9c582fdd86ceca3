"""``survey-classifier replay SOURCE --topic T``: publish an archived night onto Kafka.

Wires :mod:`stream.replay` (sources, pacing, --multiply) to the producer; the summary is one
JSON line on stdout, the progress bar and logs go to stderr. Exit codes: 0 done, 1 delivery
failed or messages left unflushed (the summary still printed), 2 bad options or source, 130
after Ctrl-C (SIGINT) and 143 after SIGTERM: what was sent is delivered (up to 10 s), the
summary printed, and stderr names the exact ``--skip N`` that resumes the replay.
"""
from __future__ import annotations

import argparse
import signal
import sys

import structlog

from stream.errors import ServiceUnreachable, UsageError

__all__ = ["register"]

log = structlog.get_logger(__name__)

_EPILOG = """\
sources (detected by content, not only by name):
  a directory or .tar.gz of per-alert Avro files (ZTF's nightly archive form); multi-record
  Avro container files (e.g. Spark part files: one message per record); a directory of Rubin
  Confluent-wire payloads; a .jsonl or .avro dump written by `survey-classifier subscribe`.

headers: sc-source-file, sc-observed-mjd, sc-observed-unix-ms, sc-replay-index, and with
--multiply sc-multiply-copy and sc-original-alert-id. The Kafka timestamp is the send time;
the key is the object id (ZTF objectId, Rubin diaObjectId).

--multiply K: copy k (1..K-1) of alert id X gets id 2**62 | k << 50 | (X mod 2**50)
  (ZTF candid + candidate.candid; Rubin diaSourceId/alertId + diaSource.diaSourceId). Ids
  with bit 62 set are never real, copies of one alert differ in k, and alerts of one night
  differ in the low 50 bits, so ids stay unique; the same night replayed again gets the
  same ids (deduplication sees repeats).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="publish an archived night (files, .tar.gz, dumps) onto a Kafka topic",
                       description="Publish archived alerts onto a Kafka topic, paced as fast as possible, at a fixed "
                                   "rate, or at the night's recorded cadence sped up.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="directory, .tar.gz, Avro container, Confluent-wire file or subscribe dump")
    p.add_argument("--topic", default=None, help="topic to publish to (default: the first configured alert topic)")
    p.add_argument("--config", help="TOML settings file (Kafka connection and client properties)")
    p.add_argument("--bootstrap-servers", default=None, help="Kafka brokers (default: settings / KAFKA_BOOTSTRAP_SERVERS)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, default=None, metavar="N", help="send N messages per second")
    pace.add_argument("--speed", type=float, default=None, metavar="K",
                      help="recorded cadence from the alerts' observation times, K times faster (e.g. 60)")
    p.add_argument("--max-gap", type=float, default=None, metavar="S",
                   help="with --speed: cap every idle gap at S seconds (the day between nights, say); default: no cap")
    p.add_argument("--reorder-window", type=int, default=1000, metavar="N",
                   help="with --speed: messages read ahead to send them in observation-time order (default 1000)")
    p.add_argument("--multiply", type=int, default=1, metavar="K", help="send each alert K times with fresh unique ids")
    p.add_argument("--skip", type=int, default=0, metavar="N",
                   help="resume: do not send the first N messages again (Ctrl-C and SIGTERM print the N to give)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="stop after sending N messages")
    p.add_argument("--partitions", type=int, default=4, help="partitions when the topic has to be created (default 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the broker's first answer before giving up (default 10)")
    p.add_argument("--skip-bad", action="store_true",
                   help="exit 0 even when some files or records could not be read (each is still named on stderr)")
    p.add_argument("--flush-timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for the last deliveries before failing (default 120)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from stream.config import load_settings
    from stream.replay.pacing import Pacer, PacingError
    from stream.replay.publish import ReplayError, ReplayInterrupted, Stopped, replay
    from stream.replay.rewrite import MultiplyError
    from stream.replay.sources import ReplaySourceError
    from stream.stack import StackError, with_stack_file

    settings = load_settings(args.config)  # a ConfigError is a UsageError
    if not args.bootstrap_servers:
        settings = with_stack_file(settings)  # a `stack up` running in this directory
    try:
        pacer = Pacer.from_options(rate_per_s=args.rate, speed=args.speed, max_gap_s=args.max_gap)
    except PacingError as exc:
        raise UsageError(str(exc)) from exc
    bootstrap = args.bootstrap_servers or settings.kafka.bootstrap_servers
    if not bootstrap:
        raise UsageError("no Kafka named: pass --bootstrap-servers or set KAFKA_BOOTSTRAP_SERVERS "
                         "(`survey-classifier stack up` in this directory starts a local one that replay finds)")
    if args.skip < 0 or (args.limit is not None and args.limit < 0) or args.reorder_window < 1:
        raise UsageError("--skip and --limit must not be negative, --reorder-window at least 1")
    topic = args.topic or settings.kafka.alert_topics[0]
    from stream.health import probe_broker

    unreachable = probe_broker({"bootstrap.servers": bootstrap, **settings.kafka.client}, timeout_s=args.connect_timeout)
    if unreachable is not None:
        raise ServiceUnreachable(f"Kafka at {bootstrap} did not answer within {args.connect_timeout:g} s ({unreachable}): "
                                 f"check --bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS and that the broker is up")

    def stop(signum: int, _frame: object) -> None:
        raise Stopped(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, stop)  # SIGTERM stops like Ctrl-C: deliver, report, say where to resume
    try:
        summary = replay(args.source, topic, bootstrap_servers=bootstrap, client_config=dict(settings.kafka.client),
                         pacer=pacer, copies=args.multiply, skip=args.skip, limit=args.limit, partitions=args.partitions,
                         progress=not args.no_progress, flush_timeout_s=args.flush_timeout,
                         reorder_window=args.reorder_window)
    except ReplayInterrupted as exc:
        return _interrupted(exc.signal_name, exc.summary)
    except KeyboardInterrupt as exc:  # before the first send (creating the topic, connecting): nothing sent
        from stream.replay.publish import ReplaySummary

        name = exc.signal_name if isinstance(exc, Stopped) else "SIGINT"
        return _interrupted(name, ReplaySummary(source=args.source, topic=topic, interrupted=name, resume_skip=args.skip))
    except (ReplaySourceError, MultiplyError) as exc:
        raise UsageError(str(exc)) from exc
    except StackError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    except ReplayError as exc:
        print(exc.summary.to_json(), flush=True)
        log.error("replay_failed", error=str(exc), sent=exc.summary.sent, resume_skip=exc.summary.resume_skip)
        return 1
    finally:
        if signal.getsignal(signal.SIGTERM) is stop:
            signal.signal(signal.SIGTERM, previous)
    print(summary.to_json(), flush=True)
    if summary.unreadable:
        for entry in summary.unreadable:
            print(f"replay: not sent: {entry['origin']}: {entry['reason']}", file=sys.stderr)
        print(f"replay: {len(summary.unreadable)} file(s) or record(s) could not be read and were not sent "
              f"({summary.sent} sent){'' if args.skip_bad else '; pass --skip-bad to accept that'}", file=sys.stderr)
        return 0 if args.skip_bad else 1
    return 0


def _interrupted(signal_name: str, done) -> int:
    """The summary line and the ``--skip`` that resumes; 130 after SIGINT, 143 after SIGTERM."""
    # Further signals must not cut the summary short.
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(done.to_json(), flush=True)
        lost = (f" ({done.unflushed} not acknowledged, {done.delivery_failures} failed: sent again on resume)"
                if done.unflushed or done.delivery_failures else "")
        print(f"replay: interrupted by {signal_name} after {done.sent} message(s) sent{lost}; resume with "
              f"--skip {done.resume_skip}", file=sys.stderr, flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 143 if signal_name == "SIGTERM" else 130
