"""``python -m benchmarks.chaos``: the accounting on constructed inputs, the cuttable proxy on real
sockets, and one short real scenario (Redis frozen mid-night under two members on the embedded
broker + redis-server)."""
from __future__ import annotations

import socket
import threading

import pytest

from benchmarks.chaos import Plan, chaos_markdown, parse_args, parse_gauges, readyz_missing
from benchmarks.chaos_accounting import Poll, account, first_times, latency_by_phase, recovery, truth
from benchmarks.chaos_faults import FAULTS
from benchmarks.tcp_proxy import TcpProxy


def test_account_counts_lost_duplicates_and_dead_letters():
    sent = {(0, 0): 1000, (0, 1): 1000, (1, 0): 1000, (1, 1): 1000, (2, 0): 1000}
    outputs = [(1500, (0, 0)), (1600, (0, 1)), (1700, (0, 1)), (1800, (0, 1)), (1900, (1, 0)), (2000, None), (2100, (9, 9))]
    dead = [(1500, (1, 1)), (1600, (1, 1))]
    a = account(sent, outputs, dead)
    assert a["inputs"] == 5 and a["outputs"] == 7
    assert a["published_distinct"] == 3 and a["dead_lettered_distinct"] == 1
    assert a["lost"] == 1 and a["lost_examples"] == ["2/0"], "(2, 0): neither classified nor dead-lettered"
    assert a["duplicates"] == 2 and a["inputs_published_more_than_once"] == 1, "(0, 1) published three times: two extra"
    assert a["dead_letter_duplicates"] == 1 and a["published_and_dead_lettered"] == 0
    assert a["outputs_naming_no_input_sent"] == 2
    clean = account(sent, [(1, k) for k in sent], [])
    assert clean["lost"] == 0 and clean["duplicates"] == 0 and clean["published_distinct"] == 5


def test_first_times_keep_the_earliest_record_per_input():
    assert first_times([(5, (0, 1)), (3, (0, 1)), (4, None), (7, (0, 2))]) == {(0, 1): 3, (0, 2): 7}


def test_latency_by_phase_splits_inputs_by_when_they_were_sent():
    sent = {(0, i): t for i, t in enumerate([0, 500, 1000, 1500, 3000, 3500])}
    first = {(0, 0): 100, (0, 1): 700, (0, 2): 5000, (0, 3): 5100, (0, 4): 3200}   # (0, 5) never published
    phases = latency_by_phase(sent, first, start_ms=1000, release_ms=3000)
    assert phases["before"]["n"] == 2 and phases["before"]["max"] == 200.0
    assert phases["during"]["n"] == 2 and phases["during"]["p50"] == 3800.0
    assert phases["after"]["n"] == 1 and phases["after"]["p50"] == 200.0


def test_recovery_is_the_backlog_back_at_its_pre_fault_maximum():
    # 10 inputs a second for 30 s; before the fault (10 s) each is accounted for 200 ms later;
    # the fault holds everything back from 10 s to 20 s; then the backlog drains at 50 a second
    sent = [t * 100 for t in range(300)]
    held = [s for s in sent if s >= 10_000]
    done = [s + 200 for s in sent if s < 10_000] + [max(20_000 + 20 * i, s + 200) for i, s in enumerate(held)]
    r = recovery(sent, done, start_ms=10_000, release_ms=20_000)
    assert r["backlog_before_max"] == 2 and r["backlog_peak"] == 100
    # at 22.5 s: 124 of the 126 sent since the fault began are out, a backlog of 2 again
    assert r["recover_s"] == 2.5 and r["recovered_at_s_after_start"] == 12.5
    never = recovery(sent, [s + 200 for s in sent if s < 10_000], start_ms=10_000, release_ms=20_000)
    assert never["recover_s"] is None, "a backlog that never drains never recovers"
    at_once = recovery(sent, [s + 200 for s in sent], start_ms=10_000, release_ms=10_000)
    assert at_once["recover_s"] == 0.0, "a fault that held nothing back has recovered at its release"
    assert recovery([], [], 0, 0)["recover_s"] is None


def _polls(states: list[tuple[float, str]], redis_up: dict[float, float] | None = None) -> list[Poll]:
    return [Poll(t, s, (redis_up or {}).get(t, 1.0 if s == "ready" else None)) for t, s in states]


def test_truth_judges_what_a_member_said():
    # the member said not-ready 1 s into the fault (10-20 s) with sc_redis_up 0, ready again 1.5 s after release
    said = _polls([(5, "ready"), (10.5, "ready"), (11, "not_ready"), (19, "not_ready"), (21, "not_ready"), (21.5, "ready"), (25, "ready")],
                  redis_up={11: 0.0, 19: 0.0, 21: 0.0})
    v = truth(said, 10, 20, expect_down=True, gauge="redis_up")
    assert v["told_truth"] and v["said_down_after_s"] == 1.0 and v["gauge_zero_after_s"] == 1.0
    assert v["ready_again_after_release_s"] == 1.5 and v["ready_at_end"] and v["not_ready_before_fault"] == 0
    assert v["first_ready_after_release_s"] == 1.5
    assert v["why_during"] == {"not_ready": 2} and v["why_after"] == {"not_ready": 1}
    # ready at the release, then one late not-ready answer: first ready at once, for good only after it
    flapped = truth(_polls([(11, "not_ready"), (20.5, "ready"), (30, "unreachable"), (31, "ready")]), 10, 20, expect_down=True)
    assert flapped["first_ready_after_release_s"] == 0.5 and flapped["ready_again_after_release_s"] == 11.0
    assert flapped["why_after"] == {"unreachable": 1}
    assert v["during"] == {"ready": 1, "not_ready": 2, "unreachable": 0}
    # ready throughout a fault that took its dependency away: a lie
    lied = _polls([(5, "ready"), (12, "ready"), (18, "ready"), (25, "ready")])
    assert not truth(lied, 10, 20, expect_down=True, gauge="redis_up")["told_truth"]
    # not ready, but the named gauge never showed the dependency down: the metrics lied
    gauge_lied = _polls([(12, "not_ready"), (25, "ready")], redis_up={12: 1.0})
    assert not truth(gauge_lied, 10, 20, expect_down=True, gauge="redis_up")["told_truth"]
    # a killed member does not answer: that is the truth
    killed = _polls([(5, "ready"), (12, "unreachable"), (25, "ready")])
    assert truth(killed, 10, 20, expect_down=True)["told_truth"]
    # a member the fault did not touch must be ready at the end; never ready again is a failure
    stuck = _polls([(5, "ready"), (12, "ready"), (25, "not_ready")])
    assert not truth(stuck, 10, 20, expect_down=False)["told_truth"]
    assert truth(_polls([(5, "not_ready"), (25, "ready")]), 10, 20, expect_down=False)["not_ready_before_fault"] == 1


def test_parse_gauges_reads_the_health_gauges_and_sums_lag():
    text = "\n".join(["# HELP sc_redis_up x", "sc_redis_up 0.0", "sc_kafka_up 1.0", "sc_in_flight_batches 2.0",
                      'sc_consumer_lag{partition="0",topic="a"} 5.0', 'sc_consumer_lag{partition="1",topic="a"} 7.0', "other 3"])
    assert parse_gauges(text) == {"sc_redis_up": 0.0, "sc_kafka_up": 1.0, "sc_in_flight_batches": 2.0, "sc_consumer_lag": 12.0}


def test_readyz_missing_names_the_false_fields():
    assert readyz_missing('{"assigned": false, "redis_up": true, "kafka_up": null, "schema_registry_up": true}') == "assigned"
    assert readyz_missing('{"assigned": true, "redis_up": false, "kafka_up": false}') == "redis_up,kafka_up"
    assert readyz_missing("") is None and readyz_missing('{"assigned": true}') is None


def test_options_and_plans():
    args = parse_args([])
    assert args.faults == list(FAULTS) and args.members == 2 and args.plan.hold_s == 20.0 and args.plan.alerts == 3000
    quick = parse_args(["--quick", "--faults", "redis_stop,kill_member", "--members", "3"])
    assert quick.faults == ["redis_stop", "kill_member"] and quick.plan.members == 3 and quick.plan.hold_s == 5.0
    with pytest.raises(SystemExit):
        parse_args(["--faults", "redis_stop,meteor"])
    plan = Plan(pre_s=20, hold_s=20, post_s=30, visit_period_s=2, restart_delay_s=10)
    assert plan.visits == 35
    assert plan.hold_for(FAULTS["redis_stop"]) == 20 and plan.hold_for(FAULTS["kill_member"]) == 10
    assert plan.hold_for(FAULTS["decode_worker_kill"]) == 0
    assert FAULTS["redis_net_cut"].expect_down(0) and not FAULTS["redis_net_cut"].expect_down(1)
    assert FAULTS["broker_stop"].expect_down(1) and not FAULTS["cpu_starve"].expect_down(0)


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(4096), b"")], daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_proxy_forwards_then_cut_resets_and_refuses_then_restores():
    server, port = _echo_server()
    proxy = TcpProxy("127.0.0.1", port).start()
    try:
        conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        conn.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        proxy.cut()
        assert proxy.is_cut
        try:                            # the open connection was reset: no answer comes back
            got = conn.recv(4)
        except ConnectionResetError:
            got = b""
        assert got == b""
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        proxy.restore()
        again = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        again.sendall(b"pong")
        assert again.recv(4) == b"pong"
        assert proxy.connections_total == 2 and proxy.connections_aborted >= 1
        again.close()
    finally:
        proxy.stop()
        server.close()


@pytest.mark.integration
@pytest.mark.slow
def test_redis_frozen_mid_night_loses_nothing_and_readyz_tells_the_truth(tmp_path):
    """The short chaos case of ``make test``: 2 members, 200 real alerts as visits, redis-server
    SIGSTOPped for 6 s mid-night, then SIGCONT."""
    from benchmarks.chaos import main

    out = tmp_path / "chaos"
    main(["--quick", "--faults", "redis_stop", "--alerts", "200", "--pre-s", "4", "--hold-s", "6", "--post-s", "5",
          "--models", "realbogus", "--out", str(out)])
    import json

    results = json.loads((out / "chaos.json").read_text())
    (run,) = results["runs"]
    a = run["accounting"]
    assert run["complete"] and a["inputs"] == 200 and a["lost"] == 0, a
    assert a["published_distinct"] + a["dead_lettered_distinct"] == 200
    assert a["duplicates"] == 0 and a["duplicates_within_window"], "a frozen Redis is no crash: nothing republished"
    assert a["outputs_naming_no_input_sent"] == 0
    for i, t in enumerate(run["truth"]):
        assert t["expect_down"] and t["during"]["not_ready"] > 0, f"member {i}: /readyz never said 503 while Redis was frozen: {t}"
        assert t["gauge_zero_after_s"] is not None, f"member {i}: sc_redis_up never read 0"
        assert t["ready_at_end"] and t["ready_again_after_release_s"] is not None, f"member {i}: not ready again after release: {t}"
        assert t["told_truth"]
    assert run["unasked_exits"] == [] and not run["crash_loop"]
    assert run["recovery"]["recover_s"] is not None
    assert run["latency_ms"]["during"]["n"] > 0 and run["latency_ms"]["after"]["n"] > 0
    md = (out / "chaos.md").read_text()
    assert "| redis_stop | 200 |" in md and results["machine"]["load_average_1_5_15"]
    assert chaos_markdown(results) == md
