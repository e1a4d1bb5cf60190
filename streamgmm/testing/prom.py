"""A real Prometheus server for end-to-end tests (Debian's ``prometheus``).

:class:`PrometheusServer` writes a config that scrapes the given targets
every second, starts the binary on a free loopback port with its own data
directory, and answers PromQL queries through the HTTP API. The binary comes
from Debian's ``prometheus`` package (``apt-get install prometheus``, which
``scripts/test`` does when it can); tests that need it skip when it is
missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from streamgmm.testing.tansu import free_port, terminate


def prometheus_path() -> str | None:
    """Path of the ``prometheus`` binary, or None when it is not installed."""
    return shutil.which("prometheus")


def promtool_path() -> str | None:
    """Path of ``promtool`` (checks rule files), or None when it is not installed."""
    return shutil.which("promtool")


def _config_text(
    targets: Sequence[str], scrape_interval: str, rule_files: Sequence[str], metrics_path: str
) -> str:
    # JSON is valid YAML, and needs no YAML library here.
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{
            "job_name": "streamgmm",
            "metrics_path": metrics_path,
            "scrape_interval": scrape_interval,
            "static_configs": [{"targets": list(targets)}],
        }],
    }
    return json.dumps(config, indent=2)


class PrometheusServer:
    """A Prometheus process scraping ``targets``, on a loopback port.

    Parameters
    ----------
    targets : list of str
        ``host:port`` of each /metrics endpoint to scrape.
    scrape_interval : str
        Prometheus duration, also used as the rule evaluation interval.
    binary : str
        Name or path of the prometheus executable.
    rule_files : list of str, optional
        Recording/alerting rule files to load.
    metrics_path : str
        Path scraped on each target.
    start_timeout_s : float
        How long :meth:`start` waits for ``/-/ready``.

    Examples
    --------
    >>> with PrometheusServer(["127.0.0.1:9464"]) as prom:  # doctest: +SKIP
    ...     prom.wait_for('up{job="streamgmm"}', lambda r: r and r[0]["value"][1] == "1")
    """

    def __init__(
        self,
        targets: Sequence[str],
        scrape_interval: str = "1s",
        binary: str = "prometheus",
        rule_files: Sequence[str] = (),
        metrics_path: str = "/metrics",
        start_timeout_s: float = 30.0,
    ) -> None:
        found = shutil.which(binary)
        if found is None:
            raise FileNotFoundError(
                f"prometheus: binary {binary!r} not found (apt-get install prometheus)"
            )
        self.binary = found
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="streamgmm-prom-"))
        self.config_path = self._dir / "prometheus.yml"
        self.config_path.write_text(
            _config_text(targets, scrape_interval, rule_files, metrics_path)
        )
        self.log_path = self._dir / "prometheus.log"
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the server's HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        """Start the server and wait until ``/-/ready`` answers 200."""
        if self._proc is not None:
            return self
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                [self.binary,
                 f"--config.file={self.config_path}",
                 f"--storage.tsdb.path={self._dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with code {self._proc.returncode}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self._get_status("/-/ready") == 200:
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(
            f"prometheus not ready within {self.start_timeout_s}s; log:\n{self.log_tail()}"
        )

    def _get_status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2.0) as resp:
                return resp.status
        except (urllib.error.URLError, OSError):
            return None

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Evaluate an instant query; return the ``data.result`` list.

        Raises
        ------
        RuntimeError
            The server rejected the query (the message carries its error).
        """
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=5.0) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise RuntimeError(
                f"prometheus query {promql!r}: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]["result"]

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 30.0,
        interval: float = 0.5,
    ) -> list[dict[str, Any]]:
        """Query until ``predicate(result)`` holds; return that result.

        Raises
        ------
        TimeoutError
            It did not hold within ``timeout`` seconds; the message shows the
            last result.
        """
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while True:
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"prometheus: {promql!r} did not satisfy the condition within "
                    f"{timeout}s; last result: {result}"
                )
            time.sleep(interval)

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last error."""
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5.0) as resp:
            return json.load(resp)["data"]["activeTargets"]

    def log_tail(self, n_lines: int = 40) -> str:
        """The last lines of the server's output, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n_lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server and delete its data directory."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc, timeout_s)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
