"""``survey-classifier status``: the consumer group as the broker sees it, for the whole group.

Reads from the broker (never from a member's ``/stats``, which dies with the member): the group's
state and members with their partition assignments (``describe_consumer_groups``), its committed
offset in every partition of the input topics (``list_consumer_group_offsets``), each partition's
end offset (the high watermark of a fetch: see :mod:`stream.offsets`) and the lag between them.
What the broker does not answer is printed as "not answered by this broker" with its reason:
Tansu, the embedded broker, answers the committed offsets but reports a group STABLE with no
members. Text on stdout, or one JSON object with ``--json``. Exit codes: 0, 2 (bad options, a
broker that does not answer).
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from stream.errors import ServiceUnreachable, UsageError

__all__ = ["register", "group_status"]

NOT_ANSWERED = "not answered by this broker"

_EPILOG = """\
examples:
  survey-classifier status --config deploy/config/ztf.toml          the ztf group: members, committed offsets, lag
  survey-classifier status --group survey-classifier --topics alerts
  survey-classifier status --json | jq .lag                          one JSON object: the total lag

columns: committed is the group's next offset to read in the partition, end the partition's high
watermark (from a fetch response), lag = end - committed, member the client id that owns it.
"-" is what the broker did not answer or the group never committed. Tansu, the embedded broker,
answers offsets but no member list: "members: not answered by this broker".
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="the consumer group from the broker: members, assignments, committed offsets, lag",
                       description="Show the service's consumer group as the broker sees it: its state, members and their "
                                   "partitions, and per input partition the committed offset, the end offset and the lag.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML settings file (group id, input topics, Kafka connection)")
    p.add_argument("--bootstrap-servers", default=None, help="Kafka brokers (default: settings / KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--group", default=None, metavar="ID", help="consumer group (default: kafka.group_id)")
    p.add_argument("--topics", default=None, metavar="T1,T2",
                   help="input topics (default: kafka.alert_topics and kafka.exposure_topics)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the text table")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds to wait for each broker answer (default 10)")
    p.set_defaults(func=_run)


def _members(admin: Any, group: str, timeout_s: float) -> tuple[str | None, list[dict[str, Any]] | None, str | None]:
    """(state, members or None, why they are missing): members with their assignments, or the reason there are none."""
    try:
        described = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result(timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure of this request is reported, not raised
        return None, None, f"{NOT_ANSWERED} ({type(exc).__name__}: {exc})"
    state = getattr(described.state, "name", str(described.state))
    members = [{"member_id": m.member_id, "client_id": m.client_id, "host": m.host,
                "assignment": sorted(f"{tp.topic}[{tp.partition}]" for tp in (m.assignment.topic_partitions or []))}
               for m in (described.members or [])]
    if not members and state not in ("EMPTY", "DEAD"):
        return state, None, f"{NOT_ANSWERED} (it reports the group {state} with no members)"
    return state, members, None


def _committed(admin: Any, group: str, partitions: list[tuple[str, int]], timeout_s: float) -> tuple[dict[tuple[str, int], int], str | None]:
    """The group's committed offset per (topic, partition) that has one, or why the broker gave none."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    if not partitions:
        return {}, None
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in partitions])
    try:
        answer = admin.list_consumer_group_offsets([request], request_timeout=timeout_s)[group].result(timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure of this request is reported, not raised
        return {}, f"{NOT_ANSWERED} ({type(exc).__name__}: {exc})"
    return {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions if tp.offset >= 0 and tp.error is None}, None


def group_status(bootstrap: str, group: str, topics: list[str], client_config: dict[str, Any] | None = None,
                 timeout_s: float = 10.0) -> dict[str, Any]:
    """The group's state, members and per-partition committed offset, end and lag (JSON-able)."""
    from confluent_kafka.admin import AdminClient

    from stream.offsets import PartitionOffsets, fetched_end_offsets, topic_partitions

    admin = AdminClient({"bootstrap.servers": bootstrap, **(client_config or {})})
    layout = topic_partitions(bootstrap, topics, client_config, timeout_s=timeout_s)
    partitions = [(t, p) for t in topics for p in layout[t]]
    state, members, members_note = _members(admin, group, timeout_s)
    committed, committed_note = _committed(admin, group, partitions, timeout_s)
    ends = fetched_end_offsets(bootstrap, partitions, start=committed, client_config=client_config, timeout_s=timeout_s)
    rows = [PartitionOffsets(t, p, committed.get((t, p)), ends.get((t, p))) for t, p in partitions]
    owners = {part: m["client_id"] or m["member_id"] for m in (members or []) for part in m["assignment"]}
    lags = [r.lag for r in rows if r.lag is not None]
    return {
        "group": group, "bootstrap_servers": bootstrap, "state": state or NOT_ANSWERED,
        "members": members, "members_note": members_note,
        "committed_note": committed_note,
        "missing_topics": [t for t in topics if not layout[t]],
        "partitions": [{"topic": r.topic, "partition": r.partition, "committed": r.position, "end": r.end, "lag": r.lag,
                        "member": owners.get(f"{r.topic}[{r.partition}]")} for r in rows],
        "lag": sum(lags) if lags else None,
    }


def _text(status: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else str(value)

    lines = [f"group {status['group']} on {status['bootstrap_servers']}: state {status['state']}"]
    if status["members"] is None:
        lines.append(f"members: {status['members_note']}")
    else:
        lines.append(f"members: {len(status['members'])}" + ("" if status["members"] else " (no member is running)"))
        for m in status["members"]:
            lines.append(f"  {m['client_id'] or '-'}  {m['member_id']}  host {m['host'] or '-'}  "
                         f"partitions {', '.join(m['assignment']) or 'none'}")
    if status["committed_note"]:
        lines.append(f"committed offsets: {status['committed_note']}")
    for topic in status["missing_topics"]:
        lines.append(f"topic {topic}: does not exist on this broker")
    rows = [("topic", "partition", "committed", "end", "lag", "member")]
    rows += [(r["topic"], str(r["partition"]), cell(r["committed"]), cell(r["end"]), cell(r["lag"]), cell(r["member"]))
             for r in status["partitions"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
              for r in rows]
    lines.append(f"total lag: {cell(status['lag'])}"
                 + ("  (- : no committed offset, or no end offset answered)" if any(r["lag"] is None for r in status["partitions"]) else ""))
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from stream.config import load_settings
    from stream.health import probe_broker
    from stream.stack import with_stack_file

    settings = load_settings(args.config)  # a ConfigError is a UsageError
    if not args.bootstrap_servers:
        settings = with_stack_file(settings)  # a `stack up` running in this directory
    bootstrap = args.bootstrap_servers or settings.kafka.bootstrap_servers
    if not bootstrap:
        raise UsageError("no Kafka named: pass --bootstrap-servers or set KAFKA_BOOTSTRAP_SERVERS")
    client_config = dict(settings.kafka.client)
    unreachable = probe_broker({"bootstrap.servers": bootstrap, **client_config}, timeout_s=args.timeout)
    if unreachable is not None:
        raise ServiceUnreachable(f"Kafka at {bootstrap} did not answer within {args.timeout:g} s ({unreachable}): "
                                 f"check --bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS and that the broker is up")
    group = args.group or settings.kafka.group_id
    topics = [t for t in args.topics.split(",") if t] if args.topics else [*settings.kafka.alert_topics, *settings.kafka.exposure_topics]
    if not topics:
        raise UsageError("no input topics: pass --topics or set kafka.alert_topics")
    status = group_status(bootstrap, group, topics, client_config, timeout_s=args.timeout)
    print(json.dumps(status, sort_keys=True) if args.json else _text(status), flush=True)
    return 0
