from __future__ import annotations

import pytest

from stream.config import ConfigError, load_settings


def test_defaults_are_valid():
    s = load_settings(env={})
    assert s.batch.max_size == 256 and s.engine.allow_untrained is False


def test_toml_and_env_precedence(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[batch]\nmax_size = 64\n[kafka]\nalert_topics = ["ztf"]\n[kafka.client]\n"security.protocol" = "SASL_SSL"\n')
    s = load_settings(cfg, env={"SC__BATCH__MAX_SIZE": "128", "SC__ENGINE__ALLOW_UNTRAINED": "false",
                                "KAFKA_BOOTSTRAP_SERVERS": "k:9092", "SC_KAFKA__SASL_PASSWORD": "hunter2"})
    assert s.batch.max_size == 128
    assert s.engine.allow_untrained is False
    assert s.kafka.alert_topics == ("ztf",)
    assert s.kafka.bootstrap_servers == "k:9092"
    assert s.kafka.common_config()["sasl.password"] == "hunter2"
    assert s.kafka.common_config()["security.protocol"] == "SASL_SSL"
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize("env,needle", [
    ({"SC__BATCH__MAX_SIZE": "many"}, "batch.max_size"),
    ({"SC__ENGINE__ALLOW_UNTRAINED": "perhaps"}, "engine.allow_untrained"),
    ({"SC__BATCH__NOPE": "1"}, "unknown key"),
    ({"SC__KAFKA__OUTPUT_TOPIC": ""}, "output_topic"),
    ({"SC__ENGINE__BACKEND": "magic"}, "engine.backend"),
    ({"SC__ENGINE__RUN_UNVALIDATED": "realbogus"}, "engine.run_unvalidated"),
    ({"SC__ENGINE__RUN_UNVALIDATED": "realbogus:lsst"}, "engine.run_unvalidated"),
])
def test_invalid_settings_are_refused_with_the_key(env, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(env=env)


def test_unknown_section_and_wrong_type_in_toml(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[nonsense]\na = 1\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_settings(cfg, env={})
    cfg.write_text('[batch]\nmax_size = "big"\n')
    with pytest.raises(ConfigError, match="batch.max_size"):
        load_settings(cfg, env={})


def test_settings_are_frozen():
    s = load_settings(env={})
    with pytest.raises(Exception):
        s.batch.max_size = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.kafka.client["x"] = 1  # type: ignore[index]


def test_decode_workers_auto_number_or_zero(tmp_path):
    from stream.config import AUTO_DECODE_WORKERS_MAX

    auto = load_settings(env={}).batch
    assert auto.decode_workers == "auto"
    assert auto.decode_worker_count(cores=2) == 2 and auto.decode_worker_count(cores=1) == 1
    assert auto.decode_worker_count(cores=64) == AUTO_DECODE_WORKERS_MAX
    assert load_settings(env={"SC__BATCH__DECODE_WORKERS": "3"}).batch.decode_worker_count(cores=2) == 3
    assert load_settings(env={"SC__BATCH__DECODE_WORKERS": "0"}).batch.decode_worker_count() == 0
    cfg = tmp_path / "c.toml"
    cfg.write_text('[batch]\ndecode_workers = "auto"\n')
    assert load_settings(cfg, env={}).batch.decode_workers == "auto"
    for bad in ("many", "-1"):
        with pytest.raises(ConfigError, match="batch.decode_workers"):
            load_settings(env={"SC__BATCH__DECODE_WORKERS": bad})


def test_decode_worker_nice_defaults_lower_and_is_checked():
    assert load_settings(env={}).batch.decode_worker_nice == 10
    assert load_settings(env={"SC__BATCH__DECODE_WORKER_NICE": "0"}).batch.decode_worker_nice == 0
    for bad in ("-1", "20"):
        with pytest.raises(ConfigError, match="batch.decode_worker_nice"):
            load_settings(env={"SC__BATCH__DECODE_WORKER_NICE": bad})


def test_per_model_backends_and_threads(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[engine]\nbackend = "onnxruntime"\nthreads = 3\nbackends = {acai = "openvino"}\n')
    eng = load_settings(cfg, env={}).engine
    assert eng.backend_for("acai") == "openvino" and eng.backend_for("braai") == "onnxruntime"
    assert eng.thread_count() == 3
    env = load_settings(env={"SC__ENGINE__BACKENDS": "acai=openvino, braai=torch"}).engine
    assert dict(env.backends) == {"acai": "openvino", "braai": "torch"}
    assert load_settings(env={}).engine.thread_count() >= 1  # 0: the usable cores
    from engines.backends import usable_cores

    cores = usable_cores()
    default = load_settings(env={}).engine   # the CPU: one score thread per core, each engine on cores // score threads
    assert default.score_thread_count() == cores and default.thread_count() == 1
    one = load_settings(env={"SC__ENGINE__SCORE_THREADS": "1"}).engine
    assert one.score_thread_count() == 1 and one.thread_count() == cores
    cuda = load_settings(env={"SC__ENGINE__DEVICE": "cuda"}).engine
    assert cuda.score_thread_count() == 1
    with pytest.raises(ConfigError, match="engine.score_threads"):
        load_settings(env={"SC__ENGINE__SCORE_THREADS": "-1"})
    with pytest.raises(ConfigError, match="engine.backends.acai"):
        load_settings(env={"SC__ENGINE__BACKENDS": "acai=magic"})
    with pytest.raises(ConfigError, match="engine.threads"):
        load_settings(env={"SC__ENGINE__THREADS": "-2"})


def test_infer_batch_is_small_on_the_cpu_and_the_models_own_on_cuda():
    from stream.config import CPU_INFER_BATCH

    assert load_settings(env={}).engine.infer_batch_size() == CPU_INFER_BATCH
    assert load_settings(env={"SC__ENGINE__DEVICE": "cuda"}).engine.infer_batch_size() == 0   # no cap
    assert load_settings(env={"SC__ENGINE__INFER_BATCH": "128"}).engine.infer_batch_size() == 128


def test_run_unvalidated_pairs_from_toml_and_env(tmp_path):
    assert load_settings(env={}).engine.unvalidated_surveys() == {}
    cfg = tmp_path / "c.toml"
    cfg.write_text('[engine]\nrun_unvalidated = ["realbogus:rubin", "alertclass:rubin"]\n')
    assert load_settings(cfg, env={}).engine.unvalidated_surveys() == {"realbogus": ("rubin",), "alertclass": ("rubin",)}
    env = {"SC__ENGINE__RUN_UNVALIDATED": "realbogus:rubin,braai:rubin"}
    assert load_settings(env=env).engine.unvalidated_surveys() == {"realbogus": ("rubin",), "braai": ("rubin",)}


@pytest.mark.parametrize("env,needle", [
    ({"SC__OBSERVABILITY__LOG_LEVEL": "verbose"}, "observability.log_level: expected one of debug, info, warning, error, critical"),
    ({"SC__ENGINE__DEVICE": "gpu"}, "engine.device: expected cpu, cuda or cuda:N, got 'gpu'"),
    ({"SC__OBSERVABILITY__LOG_FORMAT": "jsn"}, r"did you mean json\?"),
    ({"SC__KAFKA__AUTO_OFFSET_RESET": "last"}, "kafka.auto_offset_reset: expected one of earliest, latest"),
    ({"SC__KAFKA__ASSIGNMENT_STRATEGY": "sticky"}, "kafka.assignment_strategy"),
    ({"SC__KAFKA__OUTPUT_SUBJECT_STRATEGY": "subject"}, "kafka.output_subject_strategy"),
    ({"SC__BATCH__DECODE_WORKERS": "many"}, 'batch.decode_workers: expected int or "auto"'),
])
def test_enumerations_are_typed_and_refused_in_one_line(env, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        load_settings(env=env)
    assert "\n" not in str(info.value)


def test_enumerations_accept_their_members_in_any_case(tmp_path):
    s = load_settings(env={"SC__OBSERVABILITY__LOG_LEVEL": "WARNING", "SC__ENGINE__DEVICE": "cuda:1"})
    assert s.observability.log_level == "warning" and s.engine.device == "cuda:1"
    cfg = tmp_path / "c.toml"
    cfg.write_text('[engine]\ndevice = "gpu"\n')
    with pytest.raises(ConfigError, match=f"{cfg}: engine.device"):
        load_settings(cfg, env={})


def test_a_single_underscore_sc_variable_is_refused_with_the_right_spelling():
    with pytest.raises(ConfigError, match="SC_BATCH__MAX_SIZE.*e.g. SC__BATCH__MAX_SIZE"):
        load_settings(env={"SC_BATCH__MAX_SIZE": "512"})
    assert load_settings(env={"SC_KAFKA__SASL_PASSWORD": "x"}).kafka.common_config()["sasl.password"] == "x"
