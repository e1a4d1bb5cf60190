"""`streamgmm run` on a file and on stdin: every event scored, alerted or dead-lettered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from streamgmm.stream.audit import read_audit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

BAD = {  # payload -> expected reason
    b'{"id": "x", "a": 1.0': "bad_json",
    b'{"id": "x", "a": "12,50", "b": 1}': "not_a_number",
    b'{"id": "x", "b": 1}': "missing_field",
    b'{"id": "x", "a": true, "b": 1}': "wrong_type",
    b'[1, 2]': "wrong_type",
    b'{"id": "x", "a": 1e400, "b": 1}': "non_finite",
    b'{"id": "x", "a": 1e200, "b": 1}': "out_of_range",
    b'{"id": "x", "a": 1, "b": 1, "ts": 1e20}': "out_of_range",
    b'{"id": "x", "a": 1, "b": 1, "deep": ' + b"[" * 3000 + b"]" * 3000 + b"}": "bad_json",
}
OUTLIER = 15.0


def stream(n: int = 800, seed: int = 0) -> tuple[list[bytes], dict[int, str], set[int]]:
    """n lines: normal events, a bad one every 40th, an outlier every 53rd.

    Returns the lines, the expected reason by line number (from 1), and the
    line numbers of the outliers.
    """
    rng = np.random.default_rng(seed)
    bad_payloads = list(BAD)
    lines, bad, outliers = [], {}, set()
    for i in range(1, n + 1):
        a, b = rng.normal(0, 1, 2)
        if i % 53 == 0:
            a, outliers = OUTLIER, outliers | {i}
        line = json.dumps({"id": f"e{i}", "a": a, "b": b, "ts": 1709510400000 + i}).encode()
        if i % 40 == 0:
            line = bad_payloads[(i // 40) % len(bad_payloads)]
            bad[i] = BAD[line]
        lines.append(line)
    return lines, bad, outliers


def config(tmp_path: Path, source: dict, alerts: dict, dead_letter: dict) -> Path:
    doc = {
        "source": {"batch_size": 50, **source},
        "features": {"key": "id", "event_time": "ts",
                     "fields": [{"name": "a"}, {"name": "b"}]},
        "detector": {"n_components": 1, "covariance_type": "full", "contamination": 0.03,
                     "window": 400, "warmup": 100, "random_state": 0,
                     "refit": {"enabled": False}},
        "alerts": alerts,
        "dead_letter": dead_letter,
        "audit": {"path": str(tmp_path / "audit.txt")},
        "metrics": {"enabled": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamgmm", "run", *args], input=stdin,
                          capture_output=True, timeout=50)


def check_run(tmp_path, source_name, alerts, dead_letters, lines, bad, outliers):
    """Audit holds every good line; alerts are unique, readable, include the late outliers."""
    good = [i for i in range(1, len(lines) + 1) if i not in bad]
    audit = read_audit(tmp_path / "audit.txt")
    assert sorted(audit) == sorted(f"{source_name}/{i}" for i in good)
    ids = [a["alert_id"] for a in alerts]
    assert len(ids) == len(set(ids)) and set(ids) <= set(audit)
    for alert in alerts:
        assert alert["key"] == f"e{alert['alert_id'].rsplit('/', 1)[1]}"
        assert alert["explanation"] and {e["feature"] for e in alert["explanation"]} <= {"a", "b"}
        assert alert["score"] < alert["threshold"]
        assert alert["event_time"].startswith("2024-03-04T00:00:")
    late = {f"{source_name}/{i}" for i in outliers if i > 150 and i not in bad}
    assert late and late <= set(ids)
    assert {d["id"]: d["reason"] for d in dead_letters} == {
        f"{source_name}/{i}": reason for i, reason in bad.items()}
    originals = {d["id"]: d["value"].encode() for d in dead_letters}
    assert all(originals[f"{source_name}/{i}"] == lines[i - 1] for i in bad)


def file_run(tmp_path: Path) -> tuple[Path, Path, list[bytes], dict[int, str], set[int]]:
    """The stream in a JSON-lines file, alerts and dead letters to files: the
    events file, the config, and what ``stream`` returns."""
    lines, bad, outliers = stream()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    cfg = config(tmp_path, {"type": "file", "file": {"path": str(events)}},
                 {"sink": "file", "path": str(tmp_path / "alerts.jsonl")},
                 {"sink": "file", "path": str(tmp_path / "dlq.jsonl")})
    return events, cfg, lines, bad, outliers


def test_file_source_alerts_to_a_jsonl_file(tmp_path):
    events, cfg, lines, bad, outliers = file_run(tmp_path)
    done = run(["--config", str(cfg)])
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    dead = [json.loads(x) for x in (tmp_path / "dlq.jsonl").read_text().splitlines()]
    check_run(tmp_path, str(events), alerts, dead, lines, bad, outliers)
    assert done.stdout == b""
    assert b"streamgmm summary" in done.stderr and b"generate" not in done.stdout


def test_stdin_source_alerts_to_stdout_as_json_lines(tmp_path):
    lines, bad, outliers = stream(seed=1)
    cfg = config(tmp_path, {"type": "stdin"}, {"sink": "stdout"},
                 {"sink": "file", "path": str(tmp_path / "dlq.jsonl")})
    done = run(["--config", str(cfg)], stdin=b"\n".join(lines) + b"\n")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    alerts = [json.loads(x) for x in done.stdout.decode().splitlines()]
    dead = [json.loads(x) for x in (tmp_path / "dlq.jsonl").read_text().splitlines()]
    check_run(tmp_path, "stdin", alerts, dead, lines, bad, outliers)


def test_pretty_alerts_are_one_readable_line_each(tmp_path):
    lines, bad, outliers = stream(seed=2)
    cfg = config(tmp_path, {"type": "stdin"}, {"sink": "stdout"}, {"sink": "none"})
    done = run(["--config", str(cfg), "--alerts-format", "pretty"],
               stdin=b"\n".join(lines) + b"\n")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    out = done.stdout.decode().splitlines()
    assert out and all(line.startswith("ALERT e") and " score " in line for line in out)
    assert any(f"(stdin/{i})" in line and "a " in line.split(":")[-1]
               for line in out for i in outliers)


def test_csv_file_source(tmp_path):
    rng = np.random.default_rng(3)
    rows = ["id,a,b,ts"] + [f"e{i},{rng.normal():.4f},{rng.normal():.4f},{1709510400000 + i}"
                            for i in range(2, 402)]
    rows[300] = "e301,oops,1,1709510400301"
    events = tmp_path / "events.csv"
    events.write_text("\n".join(rows) + "\n")
    cfg = config(tmp_path, {"type": "file", "file": {"path": str(events), "format": "csv"}},
                 {"sink": "none"}, {"sink": "file", "path": str(tmp_path / "dlq.jsonl")})
    done = run(["--config", str(cfg)])
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    audit = read_audit(tmp_path / "audit.txt")
    assert len(audit) == 399 and f"{events}/301" not in audit and f"{events}/2" in audit
    [dead] = [json.loads(x) for x in (tmp_path / "dlq.jsonl").read_text().splitlines()]
    assert (dead["id"], dead["reason"]) == (f"{events}/301", "not_a_number")


def test_bad_config_exits_2_with_the_problem(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("source: {type: generate}\nfeatures: {fields: [{name: a}]}\n"
                   "detector: {contamination: 2}\n")
    done = run(["--config", str(cfg)])
    assert done.returncode == 2
    assert b"detector.contamination" in done.stderr


def test_restart_with_a_checkpoint_goes_on_after_the_last_line(tmp_path):
    lines, bad, _ = stream(n=400, seed=4)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    ckpt = tmp_path / "ckpt"
    cfg = config(tmp_path, {"type": "file", "file": {"path": str(events)}}, {"sink": "none"},
                 {"sink": "none"})
    doc = yaml.safe_load(cfg.read_text())
    doc["checkpoint"] = {"dir": str(ckpt), "interval_s": 3600}
    cfg.write_text(yaml.safe_dump(doc))
    assert run(["--config", str(cfg)]).returncode == 0
    assert len(read_audit(tmp_path / "audit.txt")) == 400 - len(bad)
    more, _, _ = stream(n=100, seed=5)
    with events.open("ab") as handle:
        handle.write(b"\n".join(more) + b"\n")
    done = run(["--config", str(cfg)])
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    audit = read_audit(tmp_path / "audit.txt")
    second = audit[400 - len(bad):]
    assert second and all(int(i.rsplit("/", 1)[1]) > 400 for i in second)
    from streamgmm.service.checkpoint import CheckpointStore

    meta = CheckpointStore(ckpt).load_latest().meta
    assert meta["offsets"] == [[str(events), 0, 501]]
    assert meta["n_events"] == len(audit)


def quiet_config(tmp_path: Path, n: int = 200) -> tuple[Path, dict]:
    """n events in a file and a config that sends nothing anywhere: its path and document."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(stream(n=n)[0]) + b"\n")
    cfg = config(tmp_path, {"type": "file", "file": {"path": str(events)}}, {"sink": "none"},
                 {"sink": "none"})
    return cfg, yaml.safe_load(cfg.read_text())


def restart_changed(tmp_path: Path, change) -> subprocess.CompletedProcess:
    """A run that checkpoints, then a run of the configuration as ``change`` leaves it."""
    cfg, doc = quiet_config(tmp_path)
    doc["checkpoint"] = {"dir": str(tmp_path / "ckpt")}
    cfg.write_text(yaml.safe_dump(doc))
    assert run(["--config", str(cfg)]).returncode == 0
    change(doc)
    cfg.write_text(yaml.safe_dump(doc))
    return run(["--config", str(cfg)])


def test_a_checkpoint_of_other_features_is_refused(tmp_path):
    done = restart_changed(tmp_path, lambda doc: doc["features"].update(
        fields=[{"name": "a", "transform": "log1p"}, {"name": "b"}]))
    assert done.returncode == 1
    assert b"feature_fingerprint" in done.stderr and b"cannot start" in done.stderr


def test_a_checkpoint_of_another_covariance_type_stops_the_start_clearly(tmp_path):
    done = restart_changed(tmp_path, lambda doc: doc["detector"].update(
        covariance_type="diag"))
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    assert (b"cannot be restored under this detector configuration: the saved model has "
            b"covariance_type 'full', the detector is configured with 'diag'") in done.stderr


def test_a_taken_metrics_port_stops_the_start_in_one_line(tmp_path):
    import socket

    cfg, doc = quiet_config(tmp_path, n=50)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        doc["metrics"] = {"enabled": True, "host": "127.0.0.1", "port": taken.getsockname()[1]}
        cfg.write_text(yaml.safe_dump(doc))
        done = run(["--config", str(cfg)])
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    assert b"cannot start: metrics: http server: cannot listen on 127.0.0.1:" in done.stderr


def test_a_model_file_of_other_features_stops_the_start_with_both_widths(tmp_path):
    from streamgmm.model.gmm import GaussianMixture
    from streamgmm.model.io import save_model

    save_model(GaussianMixture(1).fit(np.random.default_rng(0).normal(size=(200, 3))),
               tmp_path / "m.npz")
    cfg, doc = quiet_config(tmp_path, n=100)
    doc["detector"].update(mode="novelty", model_path=str(tmp_path / "m.npz"))
    cfg.write_text(yaml.safe_dump(doc))
    done = run(["--config", str(cfg)])
    assert done.returncode == 1
    assert b"m.npz has 3 features, but the features section gives 2 (a, b)" in done.stderr


def test_the_daemon_starts_its_refit_worker_at_once_and_stops_it_at_exit(tmp_path):
    _, cfg, *_ = file_run(tmp_path)
    doc = yaml.safe_load(cfg.read_text())
    doc["detector"]["refit"] = {"enabled": True, "every_events": 200}
    doc["logging"] = {"format": "text"}
    cfg.write_text(yaml.safe_dump(doc))
    done = run(["--config", str(cfg)])
    err = done.stderr.decode()
    assert done.returncode == 0, err[-3000:]
    started = [line for line in err.splitlines() if "refits run on a worker process (pid" in line]
    assert started, err[-3000:]
    # Logged before the source opens: a worker that cannot start shows at once.
    assert err.index(started[0]) < err.index("streamgmm summary")
    pid = int(started[0].rsplit("(pid ", 1)[1].rstrip(")"))
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
