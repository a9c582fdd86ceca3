"""The night benchmark on a tiny night: it runs end to end and writes its outputs.

Structure only, never speed: benchmarks are not timed tests. The end-to-end test
starts its own embedded broker and Redis (as ``python -m benchmarks.night`` does) and runs the
real service twice (drained backlog, paced bursts).
"""
from __future__ import annotations

import json

import pytest

from benchmarks.night import compute_ratios, parse_args
from benchmarks.night_data import build_night, make_hst_raw_fits
from benchmarks.report import timeline
from schemas.decode import decode_message
from stream.config import CPU_INFER_BATCH


def test_night_multiplies_the_bundled_packets_with_fresh_unique_ids():
    night = build_night(200)
    assert len(night.alerts) == 200
    assert set(night.describe()["by_survey"]) == {"ztf", "rubin"}
    keys = [item.key for m in night.alerts for item in decode_message(m.value)]
    assert len(keys) == 200 and len(set(keys)) == 200, "every copy must carry a fresh alert id"
    assert all(m.cutouts for m in night.alerts), "the raw baseline needs each alert's cutouts"
    headers = dict(night.alerts[-1].headers)
    assert headers["sc-multiply-copy"] == b"2" and "sc-original-alert-id" in headers


def test_synthetic_raw_exposure_decodes_to_two_sci_chips():
    from schemas.alert import InputKind
    from schemas.decode import pack_exposure

    fits_bytes = make_hst_raw_fits(seed=1, shape=(120, 200), n_sources=2)
    value = pack_exposure(fits_bytes, exposure_id="jtest", instrument="ACS/WFC", filter="F606W", exposure_time_s=1.0,
                          mjd=60000.0, kind=InputKind.RAW_EXPOSURE, compress=True)
    (exposure,) = decode_message(value)
    assert sorted(exposure.images) == ["SCI,1", "SCI,2"]
    assert exposure.images["SCI,1"].shape == (120, 200)
    assert 0 < float(exposure.images["SCI,2"].min()) <= float(exposure.images["SCI,2"].max()) <= 65535


def test_timeline_bins_outputs_and_latency_per_second():
    tl = timeline([(1000, 10), (1500, 30), (3200, 100)], t0_ms=1000)
    assert tl["t_s"] == [0.0, 1.0, 2.0]
    assert tl["per_s"] == [2.0, 0.0, 1.0]
    assert tl["p50_ms"][0] == 20.0 and tl["p50_ms"][1] is None and tl["p95_ms"][2] == 100.0


def test_ratios_use_the_same_run_figures():
    lim = {"bare_loop": {"per_s": 200.0}, "decode": {"ms_per_item": 3.0}, "raw_gunzip_fits": {"ms_per_item": 2.0},
           "inference": {"torch": {"batches": {"64": {"per_s": 100.0}}}, "onnxruntime": {"batches": {"64": {"per_s": 250.0}}}}}
    ratios = {r["name"]: r for r in compute_ratios(lim, {"asap": {"throughput_per_s": 150.0}})}
    assert ratios["service alerts/s / bare-loop alerts/s"]["value"] == 0.75 and ratios["service alerts/s / bare-loop alerts/s"]["met"] is False
    assert ratios["decode ms / raw gunzip+FITS ms per alert"]["value"] == 1.5 and ratios["decode ms / raw gunzip+FITS ms per alert"]["met"] is True
    assert ratios["onnxruntime / torch eager, batch 64"]["value"] == 2.5
    assert ratios["openvino / torch eager, batch 64"]["value"] is None
    assert ratios["TensorRT batch 1024 alerts/s (GPU host)"]["met"] is None


def test_models_option_selects_the_alert_models_everywhere():
    from benchmarks.night import _engine_env

    assert parse_args([]).models == [] and "SC__ENGINE__MODELS" not in _engine_env("onnxruntime", "cpu")
    assert parse_args(["--models", "realbogus", "braai"]).models == ["realbogus", "braai"]
    assert _engine_env("onnxruntime", "cpu", models=["realbogus", "braai"])["SC__ENGINE__MODELS"] == "realbogus,braai"


def test_preprocessing_goal_reads_the_best_batch_of_the_difference_stamp_model():
    lim = {"preprocess_by_model": {"realbogus": {"32": {"per_s": 12_000.0}, "256": {"per_s": 9_000.0}}, "braai": {"32": {"per_s": 50_000.0}}}}
    ratio = next(r for r in compute_ratios(lim, {}) if "difference-stamp preprocessing" in r["name"])
    assert ratio["value"] == 12_000.0 and ratio["met"] is True
    assert next(r for r in compute_ratios({}, {}) if "difference-stamp preprocessing" in r["name"])["met"] is None


def test_quick_defaults():
    args = parse_args(["--alerts", "300", "--quick"])
    assert (args.exposures, args.limit_alerts, args.bursts, args.burst_period_s) == (0, 300, 2, 10.0)


@pytest.mark.integration
@pytest.mark.slow
def test_tiny_night_end_to_end_writes_json_markdown_and_plot(tmp_path):
    from benchmarks.night import main

    out = tmp_path / "results"
    assert main(["--alerts", "300", "--quick", "--out", str(out), "--backends", "onnxruntime", "torch",
                 "--bursts", "2", "--burst-period-s", "4", "--models", "realbogus", "braai"]) == 0

    results = json.loads((out / "night.json").read_text())
    assert results["night"]["alerts"] == 300
    assert results["device"] == "cpu" or results["device"].startswith("cuda")
    m = results["machine"]
    assert m["cpu_model"] and m["cpu_cores"] >= 1 and m["git_commit"] and m["versions"]["torch"] and len(m["load_average_1_5_15"]) == 3

    lim = results["limits"]
    assert lim["decode"]["outcomes"] == {"ok": 300}
    for key in ("decode", "raw_gunzip_fits", "preprocess", "bare_loop"):
        assert lim[key]["per_s"] > 0, key
    for backend in ("onnxruntime", "torch"):
        assert set(lim["inference"][backend]["batches"]) == {"1", str(CPU_INFER_BATCH), "64", "256"}, backend
        assert set(lim["inference"][backend]["models"]) == {"realbogus", "braai"}, backend   # --models, in the limits...
    assert results["models"] == ["realbogus", "braai"] and set(lim["machine_limit"]["models"]) == {"realbogus", "braai"}
    assert set(lim["preprocess_by_model"]["realbogus"]) == {str(CPU_INFER_BATCH), "256"} and lim["preprocess"]["batch"] in (CPU_INFER_BATCH, 256)
    assert lim["machine_limit"]["models"]["realbogus"]["preprocess_ms"] == min(
        t["cost_ms_per_item"] for t in lim["preprocess_by_model"]["realbogus"].values())
    assert all(t["cost_ms_per_item"] <= t["ms_per_item"] for t in lim["preprocess_by_model"]["realbogus"].values())

    for mode in ("asap", "paced"):
        run = results["service"][mode]
        assert run["complete"] and run["outputs"] == run["inputs"] and run["dead_letters"] == 0, mode
        assert run["service_totals"]["published"] == run["inputs"] and run["service_totals"]["balanced"], mode
        assert run["latency_ms"]["p50"] is not None and run["latency_ms"]["p50"] <= run["latency_ms"]["p99"], mode
        assert {"decode", "preprocess", "infer", "publish"} <= set(run["stage_seconds"]), mode
        assert run["service_rss_mib"]["start"] and run["service_rss_mib"]["end"], mode
        assert sum(run["timeline"]["per_s"]) == pytest.approx(run["outputs"]), mode
    assert results["service"]["asap"]["inputs"] == 300
    kc = results["service"]["kafka_consume"]
    assert kc["complete"] and kc["messages"] == 300 and kc["per_s"] > 0 and kc["consumer_cpu_ms_per_message"] > 0
    assert results["service"]["asap"]["settings"]["SC__ENGINE__MODELS"] == "realbogus,braai"          # ...and in the service
    assert results["service"]["paced"]["plan"]["bursts"] == 2

    assert results["fastest_backend_by_model"] and set(results["service"]["model_backends"]) <= set(results["fastest_backend_by_model"])
    assert results["service"]["paced"]["drain_s"] > 0 and results["service"]["paced"]["p99_target_ms"] >= 2000
    names = [r["name"] for r in results["ratios"]]
    assert "realbogus difference-stamp preprocessing, alerts/s on one core (best batch)" in names
    assert "service alerts/s / bare-loop alerts/s" in names and "decode ms / raw gunzip+FITS ms per alert" in names
    assert next(r for r in results["ratios"] if r["name"].startswith("service"))["value"] > 0

    costs = results["stage_costs"]   # the next bottleneck, stage by stage and in CPU
    assert costs["next_bottleneck"] in costs["stages"] and {"decode", "preprocess", "infer"} <= set(costs["stages"])
    assert costs["stages"]["decode"]["limit_ms_per_alert"] == lim["machine_limit"]["decode_ms"]
    assert costs["next_bottleneck_cpu"] in ("decode_workers", "scoring_process")
    assert costs["cpu_split"]["scoring_process"]["service_cpu_ms_per_alert"] > 0

    md = (out / "night.md").read_text()
    assert "| service alerts/s / bare-loop alerts/s |" in md and "| asap |" in md and "### Kafka alone" in md
    assert "the next bottleneck is **" in md and "| scoring_process |" in md
    assert (out / "night.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_machine_limit_takes_each_models_fastest_backend_weighted_by_its_share():
    from benchmarks.limits import machine_limit

    models = {
        "realbogus": {"share": 1.0, "preprocess_ms": 0.1, "inference_ms": {"onnxruntime": {"64": 0.6, "256": 0.5},
                                                                           "openvino": {"256": 0.4}, "torch": {"256": None}}},
        "acai": {"share": 0.5, "preprocess_ms": 0.2, "inference_ms": {"onnxruntime": {"256": 1.8}}},
    }
    limit = machine_limit(1.0, models, cores=2)
    assert limit["models"]["realbogus"]["best_backend"] == "openvino" and limit["models"]["realbogus"]["best_batch"] == 256
    assert limit["models"]["acai"]["ms_per_alert"] == 1.0                # half the alerts x (0.2 + 1.8)
    assert limit["ms_per_alert_one_core"] == 2.5                         # 1.0 decode + 0.5 + 1.0
    assert limit["alerts_per_s"] == 800.0                                # 2 cores / 2.5 ms
    ratios = {r["name"]: r for r in compute_ratios({"machine_limit": limit}, {"asap": {"throughput_per_s": 400.0}})}
    ratio = ratios["service alerts/s / machine limit (stage minima over the usable cores)"]
    assert ratio["value"] == 0.5 and ratio["met"] is False


def test_night_can_be_built_from_a_fink_parquet_dump():
    from pathlib import Path

    pool = Path(__file__).resolve().parents[2].parent / "shared" / "ztf_pool" / "alerts.parquet"
    if not pool.is_file():
        pytest.skip("../shared/ztf_pool is not beside the repo")
    night = build_night(50, source=pool)
    assert len(night.alerts) == 50 and night.describe()["by_survey"] == {"ztf": 50}
    assert night.originals == 2075 and all(len(m.cutouts) == 3 for m in night.alerts)
    keys = [item.key for m in night.alerts for item in decode_message(m.value)]
    assert len(set(keys)) == 50
    assert parse_args(["--source", str(pool), "--alerts", "10"]).source == pool
def test_fastest_backend_per_model_at_the_service_batch():
    from benchmarks.night import fastest_backends

    lim = {"inference": {
        "onnxruntime": {"models": {"acai": {"batches": {"256": {"per_s": 900.0}}}, "braai": {"batches": {"256": {"per_s": 3000.0}}}}},
        "openvino": {"models": {"acai": {"batches": {"256": {"per_s": 1200.0}}}, "braai": {"batches": {"64": {"per_s": 9000.0}}}}},
        "torch": {"error": "did not load"},
    }}
    assert fastest_backends(lim, batch=256) == {"acai": "openvino", "braai": "onnxruntime"}


def test_a_backend_that_takes_one_call_at_a_time_must_be_clearly_faster_to_be_chosen():
    from benchmarks.night import ONE_CALL_AT_A_TIME_MARGIN, fastest_backends, one_call_at_a_time

    assert one_call_at_a_time("openvino") and not one_call_at_a_time("onnxruntime")

    def limits(openvino_per_s):
        return {"inference": {"onnxruntime": {"models": {"braai": {"batches": {"8": {"per_s": 3000.0}}}}},
                              "openvino": {"models": {"braai": {"batches": {"8": {"per_s": openvino_per_s}}}}}}}

    assert fastest_backends(limits(3200.0), batch=8) == {"braai": "onnxruntime"}   # 7% faster alone: not enough
    assert fastest_backends(limits(3000.0 * ONE_CALL_AT_A_TIME_MARGIN * 1.01), batch=8) == {"braai": "openvino"}


def test_limit_with_kafka_adds_the_reader_and_broker_cpu_per_message():
    lim = {"machine_limit": {"alerts_per_s": 800.0, "ms_per_alert_one_core": 2.5, "cores": 2}}
    svc = {"asap": {"throughput_per_s": 600.0}, "kafka_consume": {"messages": 1000, "consumer_cpu_ms_per_message": 0.3, "broker_cpu_s": 0.2}}
    ratios = {r["name"]: r for r in compute_ratios(lim, svc)}
    # 2 cores / (2.5 + 0.3 + 0.2 ms) = 666.7 alerts/s
    assert ratios["service alerts/s / machine limit with Kafka's CPU per message added (reader + broker)"]["value"] == pytest.approx(0.9)
    assert ratios["service alerts/s / machine limit (stage minima over the usable cores)"]["value"] == 0.75


def test_burst_latency_target_and_cpu_efficiency_ratios():
    lim = {"machine_limit": {"alerts_per_s": 800.0, "ms_per_alert_one_core": 2.5}}
    svc = {"asap": {"throughput_per_s": 400.0, "service_cpu_ms_per_alert": 3.125},
           "paced": {"latency_ms": {"p99": 9000.0}, "drain_s": 5.0, "p99_target_ms": 7000}}
    ratios = {r["name"]: r for r in compute_ratios(lim, svc)}
    assert ratios["machine-limit CPU ms per alert / service CPU ms per alert (asap)"]["value"] == 0.8
    burst = ratios["paced p99 latency / (2 s + burst drain 5.0 s)"]
    assert burst["value"] == pytest.approx(9000 / 7000, abs=1e-3) and burst["met"] is False


def test_a_limit_costs_the_smaller_of_wall_and_cpu_time():
    """On a shared machine the wall time includes waiting for a core: the limit takes the CPU time
    then; an engine's helper thread can make the CPU time exceed the wall: the limit takes the wall."""
    from benchmarks.limits import Timing, time_calls

    waited = Timing(items=100, calls=10, seconds=2.0, call_p50_ms=1, call_p95_ms=1, call_p99_ms=1, cpu_seconds=0.5)
    assert waited.cost_ms_per_item() == 5.0 and waited.as_dict()["ms_per_item"] == 20.0 and waited.as_dict()["cpu_ms_per_item"] == 5.0
    spun = Timing(items=100, calls=10, seconds=0.5, call_p50_ms=1, call_p95_ms=1, call_p99_ms=1, cpu_seconds=1.0)
    assert spun.cost_ms_per_item() == 5.0
    assert Timing(items=10, calls=1, seconds=1.0, call_p50_ms=1, call_p95_ms=1, call_p99_ms=1).cost_ms_per_item() == 100.0
    timing = time_calls(lambda: sum(range(20_000)), 1, min_seconds=0.05)
    # cost_ms_per_item is rounded to 4 places
    assert timing.cpu_seconds is not None and 0 < timing.cost_ms_per_item() <= 1000 * timing.seconds / timing.items + 1e-4
