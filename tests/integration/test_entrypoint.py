"""The image's entrypoint, run directly here (no Docker engine on this machine).

The command is read from deploy/Dockerfile (ENTRYPOINT + CMD) and run with the
venv's ``streamgmm`` on PATH, on the very config file docker-compose mounts,
against a real broker (Tansu) holding the topics the compose ``topics``
service creates and fed by the compose ``producer`` command. Only what a
deployment overrides by environment differs: the broker address, the
checkpoint directory (the volume) and the port. It must start, become ready,
pass the Dockerfile's HEALTHCHECK command, log JSON lines, and exit 0 on
SIGTERM within the grace periods of compose and the StatefulSet.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from streamgmm.service.config import load_config
from streamgmm.testing import TansuBroker, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
STATEFULSET = DEPLOY / "k8s" / "statefulset.yaml"
IMAGE_CONFIG = "/etc/streamgmm/config.yaml"


def dockerfile_exec_forms() -> dict[str, list[str]]:
    """ENTRYPOINT, CMD and the HEALTHCHECK's CMD of the last stage, as argument lists."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        for kind in ("ENTRYPOINT", "CMD", "HEALTHCHECK"):
            if line.upper().startswith(kind + " "):
                rest = line[len(kind):].strip()
                if kind == "HEALTHCHECK":
                    rest = rest[rest.index(" CMD ") + len(" CMD "):].strip()
                assert rest.startswith("["), f"Dockerfile {kind}: expected exec form, got {rest}"
                found[kind] = json.loads(rest)
    return found


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def compose_topics() -> list[tuple[str, int]]:
    """``name:partitions`` of the topics the compose ``topics`` service creates."""
    script = "\n".join(compose_services()["topics"]["command"])
    specs = re.search(r"for spec in ([^;]+);", script).group(1).split()
    return [(name, int(n)) for name, n in (spec.split(":") for spec in specs)]


def grace_period_s() -> float:
    """The shorter of compose's stop_grace_period and the StatefulSet's grace period."""
    compose = float(compose_services()["streamgmm"]["stop_grace_period"].rstrip("s"))
    sts = next(d for d in yaml.safe_load_all(STATEFULSET.read_text()) if d)
    k8s = float(sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    return min(compose, k8s)


def mounted_config() -> Path:
    """The host file compose mounts at the image's config path."""
    for volume in compose_services()["streamgmm"]["volumes"]:
        source, target = volume.split(":")[:2]
        if target == IMAGE_CONFIG:
            return (DEPLOY / source).resolve()
    raise AssertionError(f"compose mounts nothing at {IMAGE_CONFIG}")


def get(port: int, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_the_dockerfile_entrypoint_runs_the_compose_config(tmp_path):
    forms = dockerfile_exec_forms()
    config_path = mounted_config()
    assert forms["CMD"][-1] == IMAGE_CONFIG
    command = forms["ENTRYPOINT"] + forms["CMD"][:-1] + [str(config_path)]
    venv_bin = str(Path(sys.executable).parent)
    port = free_port()
    env_base = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
                "PYTHONUNBUFFERED": "1", "HOME": str(tmp_path)}
    assert shutil.which(command[0], path=env_base["PATH"]) == str(Path(venv_bin) / command[0])
    healthcheck = forms["HEALTHCHECK"]
    assert shutil.which(healthcheck[0], path=env_base["PATH"]).startswith(venv_bin)

    with TansuBroker() as broker:
        for name, partitions in compose_topics():
            broker.create_topic(name, partitions=partitions)
        env = {**env_base,
               "STREAMGMM__SOURCE__KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
               "STREAMGMM__CHECKPOINT__DIR": str(tmp_path / "checkpoints"),
               "STREAMGMM__METRICS__PORT": str(port)}
        # The config the daemon will run validates, and only these keys were overridden.
        config = load_config(config_path, env=env)
        assert config.metrics.port == port and config.metrics.enabled
        shutdown_budget = config.shutdown.timeout_s

        # No daemon yet: the HEALTHCHECK must fail, or it proves nothing below.
        idle = subprocess.run(healthcheck, env=env, capture_output=True, timeout=30)
        assert idle.returncode != 0

        producer_svc = compose_services()["producer"]
        produce = producer_svc["entrypoint"] + [
            broker.bootstrap if arg == "kafka:9092" else arg for arg in producer_svc["command"]]
        producer = subprocess.Popen(produce, env=env, stdout=subprocess.DEVNULL,
                                    stderr=open(tmp_path / "producer.log", "wb"))  # noqa: SIM115
        log = tmp_path / "daemon.log"
        with open(log, "wb") as err:
            daemon = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                      stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while get(port, "/readyz") != 200:
                assert daemon.poll() is None, f"{shlex.join(command)} exited:\n{log.read_text()}"
                assert producer.poll() is None, (tmp_path / "producer.log").read_text()
                assert time.monotonic() < deadline, f"not ready:\n{log.read_text()[-3000:]}"
                time.sleep(0.3)
            check = subprocess.run(healthcheck, env=env, capture_output=True, timeout=30)
            assert check.returncode == 0, check.stderr.decode()
            assert get(port, "/healthz") == 200
        finally:
            producer.send_signal(signal.SIGINT)
            start = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            try:
                code = daemon.wait(grace_period_s())
            except subprocess.TimeoutExpired:
                daemon.kill()
                code = daemon.wait(5)
            stopped_in = time.monotonic() - start
            try:
                producer.wait(10)
            except subprocess.TimeoutExpired:
                producer.kill()
                producer.wait(5)

    text = log.read_text()
    assert code == 0, text[-3000:]
    assert stopped_in < min(grace_period_s(), shutdown_budget + 5), stopped_in
    # logging.format is json in the mounted config: one object per line.
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and all({"level", "time", "event"} <= set(doc) for doc in lines), lines[:3]
    assert any("SIGTERM" in doc["event"] for doc in lines)
    assert list((tmp_path / "checkpoints").iterdir()), "no checkpoint written on shutdown"
