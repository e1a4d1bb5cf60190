"""bench/soak_group.py, short: a consumer group stopped and restarted under load loses nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "soak_group.py"


def test_a_group_under_repeated_stops_processes_every_event(broker, tmp_path):
    # ``broker``: skips where the suite has no Tansu binary (the script starts its own).
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--minutes", "0.4", "--chaos-every", "6",
         "--rate", "200", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "missing 0;" in done.stdout and "OK: nothing lost" in done.stdout, done.stdout
    stops = [line for line in done.stdout.splitlines() if "restarted; produced" in line]
    assert stops, done.stdout
    assert "rejoins after a rebalance that did not end: " in done.stdout, done.stdout
