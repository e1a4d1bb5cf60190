"""The configuration schema, its validator, environment overrides and check-config."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from streamgmm.commands import check_config
from streamgmm.service.config import (
    ConfigError,
    config_fingerprint,
    default_config_text,
    dump_config,
    from_dict,
    load_config,
)
from streamgmm.service.detector_config import detector_params
from streamgmm.service.schema import Config, FeaturesConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("default.yaml", "kafka.yaml", "fraud.yaml")
FRAUD_ENV = {"STREAMGMM__SOURCE__KAFKA__SASL_PLAIN_PASSWORD": "s3cret-pw"}

MINIMAL = {
    "source": {"type": "generate"},
    "features": {"fields": [{"name": "amount", "transform": "log1p"}]},
}


def problems_of(data, env=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        from_dict(Config, data, env=env)
    return info.value.problems


def with_(data: dict, section: str, **values) -> dict:
    """A copy of ``data`` with ``values`` merged into ``section``."""
    out = {k: dict(v) for k, v in data.items()}
    out.setdefault(section, {}).update(values)
    return out


# ---------------------------------------------------------------- the shipped files


@pytest.mark.parametrize("name", EXAMPLES)
def test_shipped_examples_validate(name):
    config = load_config(ROOT / "config" / name, env=FRAUD_ENV)
    assert isinstance(config, Config)
    assert config.features.n_features == 18


@pytest.mark.parametrize("name", EXAMPLES)
def test_repository_copies_match_the_packaged_files(name):
    assert (ROOT / "config" / name).read_text() == default_config_text(name)


def test_embedded_default_needs_no_kafka_and_no_port():
    config = load_config(None, env={})
    assert config.source.type == "generate"
    assert config.metrics.enabled is False
    assert config.alerts.sink == "stdout"
    names = [f.name for f in config.features.fields]
    assert "is_fraud" not in names


def test_fraud_example_needs_its_password_from_the_environment():
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "config" / "fraud.yaml", env={})
    assert info.value.problems == [
        "source.kafka.sasl_plain_password: required with sasl_mechanism SCRAM-SHA-512 "
        "(pass it as STREAMGMM__SOURCE__KAFKA__SASL_PLAIN_PASSWORD)"
    ]


def test_minimal_document_gets_defaults():
    config = from_dict(Config, MINIMAL)
    assert config.detector.n_components == "auto"
    assert config.detector.contamination == 0.02
    assert config.source.kafka.max_poll_records == 2000
    assert config.features.max_message_bytes == 1 << 20


# ------------------------------------------------------------------ single problems


def test_out_of_range_names_key_value_and_interval():
    data = with_(MINIMAL, "detector", contamination=2)
    assert problems_of(data) == ["detector.contamination: expected a number in (0, 0.5), got 2"]


def test_inclusive_lower_bound():
    data = with_(MINIMAL, "detector", n_components=0)
    assert problems_of(data) == [
        "detector.n_components: expected an integer >= 1 or one of 'auto', got 0"]


def test_unknown_key_suggests_nearest():
    data = with_(MINIMAL, "detector", n_componets=3)
    assert problems_of(data) == ["detector.n_componets: unknown key; did you mean 'n_components'?"]


def test_unknown_key_without_close_match_lists_valid_keys():
    data = with_(MINIMAL, "health", zzz=1)
    assert problems_of(data) == ["health.zzz: unknown key; expected one of: stall_timeout_s"]


def test_missing_required_key():
    assert problems_of({"features": MINIMAL["features"]}) == [
        "source: missing required key (expected a mapping)"
    ]
    problems = problems_of({**MINIMAL, "source": {}})
    assert problems == [
        "source.type: missing required key (expected one of 'kafka', 'file', 'stdin', 'generate')"
    ]


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("detector", "n_components", True, "expected an integer >= 1 or one of 'auto', got true"),
        ("detector", "n_components", "12", 'expected an integer >= 1 or one of \'auto\', got "12"'),
        ("detector", "n_components", 2.5, "expected an integer >= 1 or one of 'auto', got 2.5"),
        (
            "detector",
            "learn_from_anomalies",
            "yes please",
            'expected true or false, got "yes please"',
        ),
        ("detector", "contamination", ".nan", 'expected a number in (0, 0.5), got ".nan"'),
        ("metrics", "host", 8080, "expected a string, got 8080"),
        (
            "logging",
            "format",
            "jsn",
            "expected one of 'text', 'json', got \"jsn\"; did you mean 'json'?",
        ),
    ],
)
def test_wrong_types(section, key, value, expected):
    assert problems_of(with_(MINIMAL, section, **{key: value})) == [f"{section}.{key}: {expected}"]


def test_yaml_nan_is_not_a_number():
    text = (
        "source: {type: generate}\n"
        "features: {fields: [{name: a}]}\n"
        "detector: {contamination: .nan}\n"
    )
    with pytest.raises(ConfigError) as info:
        from_dict(Config, yaml.safe_load(text))
    assert info.value.problems == ["detector.contamination: expected a number in (0, 0.5), got NaN"]


def test_integer_accepted_where_a_number_is_expected():
    config = from_dict(Config, with_(MINIMAL, "checkpoint", interval_s=5))
    assert config.checkpoint.interval_s == 5.0
    assert isinstance(config.checkpoint.interval_s, float)


# ------------------------------------------------------------------- cross-field rules


def test_kafka_source_needs_brokers_and_topics():
    problems = problems_of({**MINIMAL, "source": {"type": "kafka"}})
    assert problems == [
        "source.kafka.bootstrap_servers: required with source.type kafka",
        "source.kafka.topics: required with source.type kafka (or 'pattern')",
    ]


def test_kafka_topics_and_pattern_exclusive():
    source = {
        "type": "kafka",
        "kafka": {"bootstrap_servers": "b:9092", "topics": ["t"], "pattern": "t.*"},
    }
    assert problems_of({**MINIMAL, "source": source}) == [
        "source.kafka.pattern: set 'topics' or 'pattern', not both"
    ]


def test_warmup_longer_than_window():
    data = with_(MINIMAL, "detector", warmup=6000, window=5000)
    assert problems_of(data) == ["detector.warmup: expected at most window (5000), got 6000"]


def test_kafka_alerts_need_a_topic_and_brokers():
    data = with_(MINIMAL, "alerts", sink="kafka")
    assert problems_of(data) == [
        "alerts.topic: required with sink kafka",
        "source.kafka.bootstrap_servers: required with alerts.sink kafka",
    ]


def test_file_sinks_need_a_path():
    data = with_(MINIMAL, "dead_letter", sink="file")
    assert problems_of(data) == ["dead_letter.path: required with sink file"]


def test_transform_parameters_present_and_only_with_their_transform():
    fields = [
        {"name": "hour", "transform": "cyclic"},
        {"name": "amount", "transform": "log1p", "period": 3},
        {"name": "mcc", "transform": "onehot", "vocabulary": ["a", "other"], "default": 3},
        {"name": "hour", "transform": "scale", "scale": {"scale": 0}},
    ]
    problems = problems_of({**MINIMAL, "features": {"fields": fields}})
    assert problems == [
        "features.fields[0].period: required with transform cyclic",
        "features.fields[1].period: only used with transform cyclic",
        "features.fields[2].vocabulary: 'other' is reserved for unknown categories",
        "features.fields[2].default: expected a string, got 3.0",
        "features.fields[3].scale.scale: expected a number > 0, got 0",
    ]


@pytest.mark.parametrize(("field", "problem"), [
    ({"name": ""}, "features.fields[0].name: expected a non-empty name, got ''"),
    ({"name": " "}, "features.fields[0].name: expected a non-empty name, got ' '"),
    ({"name": "a", "path": "m..b"},
     "features.fields[0].path: expected dotted names with no empty part, got 'm..b'"),
    ({"name": "a."}, "features.fields[0].name: expected dotted names with no empty part, "
                     "got 'a.'"),
])
def test_feature_names_and_paths_are_not_empty(field, problem):
    assert problems_of({**MINIMAL, "features": {"fields": [field]}}) == [problem]


def test_warmup_of_one_event_and_a_window_beyond_memory_are_refused():
    assert problems_of(with_(MINIMAL, "detector", warmup=1)) == [
        "detector.warmup: expected an integer >= 2, got 1"]
    assert problems_of(with_(MINIMAL, "detector", window=10**12)) == [
        "detector.window: expected an integer in [1, 10000000], got 1000000000000"]


KAFKA = {**MINIMAL, "source": {"type": "kafka", "kafka": {
    "bootstrap_servers": "localhost:9092", "topics": ["tx"]}}}


def test_topic_names_kafka_would_refuse_are_named():
    data = {**KAFKA, "source": {"type": "kafka", "kafka": {
        "bootstrap_servers": "localhost:9092", "topics": ["tx", "bad topic!"]}},
        "alerts": {"sink": "kafka", "topic": "alerts/eu"},
        "dead_letter": {"sink": "kafka", "topic": "x" * 250}}
    legal = "expected a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -), got"
    assert problems_of(data) == [
        f"source.kafka.topics[1]: {legal} 'bad topic!'",
        f"alerts.topic: {legal} 'alerts/eu'",
        f"dead_letter.topic: {legal} '{'x' * 250}'",
    ]


@pytest.mark.parametrize("source", [{"topics": ["tx"]}, {"pattern": "t.*"},
                                    {"pattern": "t"}])  # the client's match is a prefix one
def test_sinks_cannot_write_to_a_topic_the_source_reads(source):
    data = {**MINIMAL, "source": {"type": "kafka", "kafka": {
        "bootstrap_servers": "localhost:9092", **source}},
        "alerts": {"sink": "kafka", "topic": "alerts"},
        "dead_letter": {"sink": "kafka", "topic": "tx"}}
    assert problems_of(data) == [
        "dead_letter.topic: expected a topic the source does not read, got 'tx'"]


def test_a_subscription_pattern_must_compile():
    data = {**MINIMAL, "source": {"type": "kafka", "kafka": {
        "bootstrap_servers": "localhost:9092", "pattern": "tx(["}}}
    [problem] = problems_of(data)
    assert problem.startswith("source.kafka.pattern: expected a regular expression (")
    assert problem.endswith("got 'tx(['")


def test_duplicate_feature_names():
    fields = [{"name": "a"}, {"name": "a"}]
    data = {**MINIMAL, "features": {"fields": fields}}
    assert problems_of(data) == ["features.fields[1].name: duplicate feature name 'a'"]


def test_client_options_cannot_override_managed_settings():
    source = {
        "type": "generate",
        "kafka": {"client_options": {"enable_auto_commit": True, "group_id": "x"}},
    }
    assert problems_of({**MINIMAL, "source": source}) == [
        "source.kafka.client_options.enable_auto_commit: managed by streamgmm and cannot be "
        "overridden",
        "source.kafka.client_options.group_id: managed by streamgmm; set the dedicated key instead",
    ]


# ----------------------------------------------------------------- all problems at once


def test_every_problem_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "source:\n  type: kafak\n"
        "features:\n  fields: [{name: amount, transfrom: log1p}]\n"
        "detector:\n  contamination: 2\n  window: true\n"
        "metrics: {port: 70000}\n"
        "metrics: {port: 1}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [
        "line 9: duplicate key 'metrics'",
        "source.type: expected one of 'kafka', 'file', 'stdin', 'generate', got \"kafak\"; "
        "did you mean 'kafka'?",
        "features.fields[0].transfrom: unknown key; did you mean 'transform'?",
        "detector.contamination: expected a number in (0, 0.5), got 2",
        "detector.window: expected an integer in [1, 10000000], got true",
    ]
    assert str(info.value).startswith(f"5 configuration problems in {path}:\n  line 9")


def test_invalid_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("source:\n  type: [generate\n")
    with pytest.raises(ConfigError, match=r"invalid YAML: .*\(line 3, column 1\)"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", env={})


def test_a_file_that_is_not_utf8_is_named_with_the_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("# caf\u00e9\nsource: {type: generate}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 0xe9 at "
                                          r"offset 5\); save the file as UTF-8"):
        load_config(path, env={})


def test_document_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"expected a mapping, got \[1, 2\]"):
        load_config(path, env={})


def test_unsafe_yaml_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("source: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path, env={})


# -------------------------------------------------------------- environment overrides


def test_env_override_parses_yaml_scalars_and_matches_case_insensitively():
    env = {
        "STREAMGMM__SOURCE__KAFKA__BOOTSTRAP_SERVERS": "host:9092",
        "streamgmm__Detector__N_COMPONENTS": "7",
        "STREAMGMM__ALERTS__INCLUDE_FEATURES": "false",
        "STREAMGMM__SOURCE__KAFKA__TOPICS": "[a, b]",
        "STREAMGMM__SOURCE__KAFKA__CLIENT_OPTIONS__REQUEST_TIMEOUT_MS": "30000",
        "STREAMGMM_CONFIG": "/not/an/override",
    }
    config = from_dict(Config, MINIMAL, env=env)
    assert config.source.kafka.bootstrap_servers == "host:9092"
    assert config.detector.n_components == 7
    assert config.alerts.include_features is False
    assert config.source.kafka.topics == ["a", "b"]
    assert config.source.kafka.client_options == {"request_timeout_ms": 30000}


def test_env_string_keys_take_text_verbatim_and_lists_accept_commas():
    env = {
        "STREAMGMM__SOURCE__KAFKA__SASL_PLAIN_PASSWORD": "123456",
        "STREAMGMM__SOURCE__KAFKA__SSL_PASSWORD": "p#ss: [word",
        "STREAMGMM__SOURCE__KAFKA__TOPICS": "transactions, refunds",
    }
    kafka = from_dict(Config, MINIMAL, env=env).source.kafka
    assert kafka.sasl_plain_password == "123456"
    assert kafka.ssl_password == "p#ss: [word"
    assert kafka.topics == ["transactions", "refunds"]


def test_env_override_beats_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(with_(MINIMAL, "detector", window=100, warmup=50)))
    config = load_config(path, env={"STREAMGMM__DETECTOR__WINDOW": "200"})
    assert config.detector.window == 200


def test_bad_env_override_names_the_variable():
    env = {"STREAMGMM__DETECTOR__CONTAMINATION": "2", "STREAMGMM__METRICS__PORT": "[1"}
    problems = problems_of(MINIMAL, env=env)
    assert problems[0].startswith("STREAMGMM__METRICS__PORT: not a YAML value: ")
    assert problems[1:] == [
        "detector.contamination (from STREAMGMM__DETECTOR__CONTAMINATION): "
        "expected a number in (0, 0.5), got 2"
    ]


def test_env_cross_field_problem_names_the_variable():
    problems = problems_of(MINIMAL, env={"STREAMGMM__DETECTOR__WARMUP": "9000"})
    assert problems == [
        "detector.warmup (from STREAMGMM__DETECTOR__WARMUP): expected at most window (5000), "
        "got 9000"
    ]


def test_unknown_env_path_suggests():
    problems = problems_of(
        MINIMAL,
        env={
            "STREAMGMM__DETECTOR__N_COMPONETS": "3",
            "STREAMGMM__DETECTR__WINDOW": "3",
            "STREAMGMM__FEATURES__FIELDS__0__NAME": "x",
        },
    )
    assert problems == [
        "STREAMGMM__DETECTOR__N_COMPONETS: unknown key 'n_componets' in detector; "
        "did you mean 'n_components'?",
        "STREAMGMM__DETECTR__WINDOW: unknown key 'detectr' in the top level; "
        "did you mean 'detector'?",
        "STREAMGMM__FEATURES__FIELDS__0__NAME: features.fields has no sub-keys "
        "(set the whole value)",
    ]


# -------------------------------------------------------------------- secrets, output


def test_secrets_redacted_in_dump_and_errors():
    env = {
        "STREAMGMM__SOURCE__KAFKA__SASL_PLAIN_PASSWORD": "hunter2-sasl",
        "STREAMGMM__SOURCE__KAFKA__SSL_PASSWORD": "hunter2-ssl",
        "STREAMGMM__SOURCE__KAFKA__CLIENT_OPTIONS__SASL_OAUTH_TOKEN": "hunter2-token",
        "STREAMGMM__SOURCE__KAFKA__CLIENT_OPTIONS__API_SECRET": "hunter2-api",
    }
    config = from_dict(Config, MINIMAL, env=env)
    text = dump_config(config)
    assert "hunter2" not in text
    plain = config.redacted()
    assert plain["source"]["kafka"]["sasl_plain_password"] == "***"
    assert plain["source"]["kafka"]["client_options"]["sasl_oauth_token"] == "***"
    assert plain["source"]["kafka"]["sasl_plain_username"] is None
    assert config.source.kafka.ssl_password == "hunter2-ssl"  # the config itself keeps it
    assert yaml.safe_load(text) == plain

    bad = with_(MINIMAL, "source", kafka={"sasl_plain_password": 424242})
    assert problems_of(bad) == ["source.kafka.sasl_plain_password: expected a string, got ***"]


def test_fingerprint_stable_and_sensitive():
    base = from_dict(FeaturesConfig, {"fields": [{"name": "amount", "transform": "log1p"}]})
    same = from_dict(
        FeaturesConfig,
        {
            "fields": [{"name": "amount", "path": "amount", "transform": "log1p"}],
            "max_message_bytes": 10,
            "key": "id",
        },
    )
    assert config_fingerprint(base) == config_fingerprint(same)
    assert len(config_fingerprint(base)) == 64
    for change in ({"transform": "none"}, {"path": "amt"}, {"name": "amt"}, {"default": 0}):
        other = dataclasses.replace(base, fields=[dataclasses.replace(base.fields[0], **change)])
        assert config_fingerprint(other) != config_fingerprint(base), change
    kafka = load_config(ROOT / "config" / "kafka.yaml", env={})
    assert config_fingerprint(kafka.features) == config_fingerprint(
        load_config(None, env={}).features
    )
    assert (
        config_fingerprint(kafka.features)
        == "ce059335005e" + config_fingerprint(kafka.features)[12:]
    )  # pinned prefix: the hash must not drift between releases


# ----------------------------------------------------------------------- check-config


def run_check(argv: list[str], monkeypatch, env: dict | None = None) -> int:
    for name in list(__import__("os").environ):
        if name.upper().startswith("STREAMGMM__"):
            monkeypatch.delenv(name)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    check_config.register(parser.add_subparsers())
    args = parser.parse_args(["check-config", *argv])
    return args.func(args)


def test_check_config_ok_prints_redacted_config(capsys, monkeypatch):
    code = run_check([str(ROOT / "config" / "fraud.yaml")], monkeypatch, env=FRAUD_ENV)
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("OK\n")
    assert "s3cret-pw" not in out
    assert yaml.safe_load(out[3:])["source"]["kafka"]["sasl_plain_password"] == "***"


def test_check_config_reports_every_problem_with_exit_2(tmp_path, capsys, monkeypatch):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(with_(MINIMAL, "detector", contamination=2, n_componets=2)))
    assert run_check([str(path)], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "detector.contamination: expected a number in (0, 0.5), got 2" in err
    assert "detector.n_componets: unknown key; did you mean 'n_components'?" in err


def test_check_config_default_and_schema(capsys, monkeypatch):
    assert run_check([], monkeypatch) == 0
    assert capsys.readouterr().out.startswith("OK\nsource:\n  type: generate\n")
    assert run_check(["--schema"], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "detector.contamination (float; default 0.02): " in out
    assert "source.type ('kafka' | 'file' | 'stdin' | 'generate'; required)" in out


def test_env_overrides_are_relative_to_the_validated_class():
    features = from_dict(
        FeaturesConfig, {"fields": [{"name": "a"}]}, env={"STREAMGMM__MAX_MESSAGE_BYTES": "10"}
    )
    assert features.max_message_bytes == 10


def test_refit_worker_is_a_process_unless_told_and_reaches_the_detector():
    config = from_dict(Config, MINIMAL)
    assert config.detector.refit.worker == "process"
    params = detector_params(config.detector, ["amount"])
    # The same arguments build a fresh detector and a restored one (checkpoints).
    assert params["refit_worker"] == "process" and params["refit_max_duty"] == 0.25
    data = with_(MINIMAL, "detector", refit={"worker": "thread"})
    assert from_dict(Config, data).detector.refit.worker == "thread"
    assert problems_of(with_(MINIMAL, "detector", refit={"worker": "fork"})) == [
        "detector.refit.worker: expected one of 'thread', 'process', got \"fork\""]


def test_trim_is_optional_at_least_contamination_and_reaches_the_detector():
    from streamgmm.detect.detector import AnomalyDetector

    config = from_dict(Config, MINIMAL)
    assert config.detector.trim is None
    assert detector_params(config.detector, ["amount"])["trim"] is None
    data = with_(MINIMAL, "detector", contamination=0.01, trim=0.05)
    params = detector_params(from_dict(Config, data).detector, ["amount"])
    assert params["trim"] == 0.05 and AnomalyDetector(**params).trim == 0.05
    assert problems_of(with_(MINIMAL, "detector", contamination=0.02, trim=0.01)) == [
        "detector.trim: expected at least contamination (0.02), got 0.01"]
    assert problems_of(with_(MINIMAL, "detector", contamination=0.3, trim=0.25)) == [
        "detector.trim: expected null with contamination (0.3) above 0.25, got 0.25"]
    assert problems_of(with_(MINIMAL, "detector", trim=0.7)) == [
        "detector.trim: expected a number in (0, 0.25], got 0.7"]


def test_the_schema_bounds_trim_as_the_detector_does():
    from streamgmm.detect.detector import MAX_TRIM
    from streamgmm.service import schema

    field = {f.name: f for f in dataclasses.fields(schema.DetectorConfig)}["trim"]
    assert field.metadata["max"] == MAX_TRIM


# The detector's parameter behind each key of the detector section.
DETECTOR_KEYS = {
    "n_components": "n_components", "covariance_type": "covariance_type",
    "contamination": "contamination", "trim": "trim", "window": "window",
    "warmup": "warmup", "mode": "mode", "random_state": "random_state",
    "top_features": "top_features", "refit.every_events": "refit_every",
    "refit.every_seconds": "refit_seconds", "refit.n_init": "refit_n_init",
    "refit.max_duty": "refit_max_duty", "refit.worker": "refit_worker",
}


@pytest.mark.parametrize("key", sorted(DETECTOR_KEYS))
def test_the_detector_section_has_the_detector_s_bounds_and_choices(key):
    import typing

    from streamgmm.detect import params
    from streamgmm.service import detector_config

    section, _, name = key.rpartition(".")
    cls = detector_config.RefitConfig if section else detector_config.DetectorConfig
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    hint = typing.get_type_hints(cls)[name]
    literal = next((h for h in (hint, *typing.get_args(hint))
                    if typing.get_origin(h) is typing.Literal), None)
    param = DETECTOR_KEYS[key]
    if any(isinstance(c, params.Options) for c in params.PARAMETERS[param]):
        assert typing.get_args(literal) == params.choices(param)
    if any(isinstance(c, params.Interval) for c in params.PARAMETERS[param]):
        bounds = {k: v for k, v in field.metadata.items() if k != "help"}
        expected = params.schema_bounds(param)
        if key == "window":  # the daemon's own memory bound, below the library's none
            expected["max"] = detector_config.MAX_WINDOW
        assert bounds == expected


def test_a_detector_section_the_schema_takes_makes_a_detector_and_one_it_refuses_does_not():
    from streamgmm.detect.detector import AnomalyDetector

    for changes in ({"warmup": 600, "window": 500}, {"contamination": 0.02, "trim": 0.01},
                    {"contamination": 0.3, "trim": 0.25},
                    {"warmup": 3, "n_components": 4}):
        data = with_(MINIMAL, "detector", **changes)
        problem = problems_of(data)[0].removeprefix("detector.")
        values = {**detector_params(from_dict(Config, MINIMAL).detector), **changes}
        with pytest.raises(ValueError) as refused:
            AnomalyDetector(**values)
        assert str(refused.value).split(":")[0] == problem.split(":")[0], (changes, problem)
    AnomalyDetector(**detector_params(from_dict(Config, MINIMAL).detector, ["amount"])).close()
