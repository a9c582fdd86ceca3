"""``survey-classifier stack up``: run the embedded broker + Redis by hand until Ctrl-C.

It creates every topic a service would use: the default list (which is exactly
``deploy/config/embedded.toml``'s), or with ``--config`` that file's input, output and
dead-letter topics, so a service started on it never subscribes to a topic that is missing.
It writes the addresses to ``var/stack.env`` (:data:`stream.stack.STACK_FILE`, in the current
directory), which ``run``, ``replay``, ``subscribe`` and ``status`` started in the same directory
read when ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` are unset; it is removed on stop.
"""
from __future__ import annotations

import argparse
import signal
import threading

from stream.stack import EMBEDDED_PARTITIONS, EMBEDDED_TOPICS

__all__ = ["register", "config_topics"]


def config_topics(config: str) -> list[str]:
    """Every topic the service configured by ``config`` reads or writes."""
    from stream.config import load_settings

    return load_settings(config, env={}).kafka.all_topics()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stack", help="run the embedded Kafka-protocol broker (Tansu) and Redis",
                       description="Run the embedded broker and Redis (memory only) until Ctrl-C, with the topics created.")
    p.add_argument("action", choices=("up",), help="up: start both, print how to reach them, stop on Ctrl-C")
    p.add_argument("--kafka-port", type=int, default=0, help="broker port (default: a free one)")
    p.add_argument("--redis-port", type=int, default=0, help="Redis port (default: a free one)")
    p.add_argument("--topics", default=",".join(EMBEDDED_TOPICS),
                   help="comma-separated topics to create (Tansu auto-creates with 4 partitions otherwise)")
    p.add_argument("--config", default=None, metavar="TOML",
                   help="create the topics this service config uses instead of --topics")
    p.add_argument("--partitions", type=int, default=EMBEDDED_PARTITIONS)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from stream.stack import STACK_FILE, EmbeddedStack, create_topics, remove_stack_file, write_stack_file

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedStack(kafka_port=args.kafka_port, redis_port=args.redis_port) as stack:
        topics = config_topics(args.config) if args.config else [t for t in args.topics.split(",") if t]
        create_topics(stack.bootstrap_servers, topics, partitions=args.partitions)
        print(f"# topics: {', '.join(topics)}", flush=True)
        print(f"export KAFKA_BOOTSTRAP_SERVERS={stack.bootstrap_servers}", flush=True)
        print(f"export REDIS_URL={stack.redis_url}", flush=True)
        write_stack_file(stack.bootstrap_servers, stack.redis_url)
        print(f"# written to {STACK_FILE}: run, replay, subscribe and status started in this directory use it "
              f"when KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are unset", flush=True)
        print("# embedded stack is up (memory only); Ctrl-C stops it", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            remove_stack_file(stack.bootstrap_servers)
    print("# embedded stack stopped", flush=True)
    return 0
