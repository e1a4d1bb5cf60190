"""`scripts/run`: the two-command start, on the embedded default (no Kafka)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]


def test_scripts_run_prints_alerts_and_the_summary():
    env = {**os.environ, "STREAMGMM__SOURCE__GENERATE__N_EVENTS": "4000"}
    done = subprocess.run([str(ROOT / "scripts" / "run")], cwd=ROOT, env=env,
                          capture_output=True, timeout=170)
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr[-3000:]
    # Not a terminal: alerts are JSON lines on stdout, logs and the summary on stderr.
    alerts = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert alerts and all(a["alert_id"].startswith("generate/") for a in alerts)
    assert all(a["explanation"] and a["key"].startswith("t") for a in alerts)
    assert "streamgmm starting: source generate" in stderr
    summary = stderr[stderr.index("streamgmm summary"):]
    assert re.search(r"events\s+4000 in [\d.]+ s \(\d+ events/s\)", summary)
    assert re.search(rf"alerts\s+{len(alerts)}\n", summary)
    assert re.search(r"precision\s+\d+\.\d%", summary) and re.search(r"recall\s+\d+\.\d%", summary)
    for pattern in ("card_testing", "account_takeover", "impossible_travel", "cash_out"):
        assert pattern in summary


def test_scripts_run_passes_arguments_through(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("source: {type: nowhere}\n")
    done = subprocess.run([str(ROOT / "scripts" / "run"), "--config", str(config)], cwd=ROOT,
                          capture_output=True, timeout=120)
    assert done.returncode == 2
    assert b"source.type" in done.stderr and b"features" in done.stderr
