"""A real Prometheus for the stack: its own config, data folder and port, scraping each daemon's /metrics.

    server = PrometheusServer(state_dir / "prometheus", port=free_port(), targets={"magic-scanner": 41017})
    server.start()                      # waits until it is ready and has scraped every target once
    server.query('max by (rse) (magic_risk_files)')
    server.stop()

Debian's `prometheus` package provides the binary; its system service is never used (it would hold :9090
and scrape nothing of ours). Every daemon is a target of the job ``rucio`` with a label ``daemon``, as a
site would list its daemons' pods.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from . import processes

PACKAGE = "prometheus"
JOB = "rucio"


class PrometheusError(RuntimeError):
    """Prometheus could not be started, or refused a query; the message says why."""


def missing() -> str | None:
    """Why a Prometheus cannot run here, or None when it can."""
    if shutil.which("prometheus") is None:
        return f"no prometheus binary: apt-get install {PACKAGE}"
    return None


@dataclasses.dataclass
class PrometheusServer:
    """One Prometheus on 127.0.0.1:``port`` scraping ``targets`` (daemon name -> /metrics port) every
    ``scrape_seconds``; config, data, log and pid file under ``state``."""

    state: Path
    port: int
    targets: dict[str, int]
    scrape_seconds: float = 2.0
    host: str = "127.0.0.1"
    log_dir: Path | None = None  # default: under state
    run_dir: Path | None = None  # default: under state; a stack's run folder, so that ``down`` stops it too

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.state / "prometheus.yml"

    @property
    def log_file(self) -> Path:
        return (self.log_dir or self.state / "log") / "prometheus.log"

    @property
    def pid_file(self) -> Path:
        return (self.run_dir or self.state / "run") / "prometheus.pid"

    def config_text(self) -> str:
        """JSON is YAML: one job, one static target per daemon, labelled with its name."""
        interval = f"{self.scrape_seconds:g}s"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [{
                "job_name": JOB,
                "metrics_path": "/metrics",
                "static_configs": [
                    {"targets": [f"{self.host}:{port}"], "labels": {"daemon": name}}
                    for name, port in sorted(self.targets.items())
                ],
            }],
        }
        return json.dumps(config, indent=2) + "\n"

    def argv(self) -> list[str]:
        return [
            "prometheus",
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.state / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def start(self, timeout: float = 60.0) -> None:
        """Start (kept if running) and wait until ready with every target scraped once."""
        reason = missing()
        if reason:
            raise PrometheusError(reason)
        for folder in (self.state / "data", self.log_file.parent, self.pid_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config_text())
        if not processes.is_alive(self.pid_file):
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
            processes.start("prometheus", self.argv(), env, self.log_file.parent, self.pid_file.parent)
        self.wait(timeout)

    def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not processes.is_alive(self.pid_file):
                raise PrometheusError(f"prometheus exited while starting; see {self.log_file}")
            if self.ready() and self.scraped_all():
                return
            time.sleep(0.3)
        raise PrometheusError(f"prometheus was not ready with every target scraped within {timeout:.0f} s; "
                              f"targets: {self.target_health()}; see {self.log_file}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def target_health(self) -> dict[str, str]:
        """Each daemon's last scrape: "up", "down" (with Prometheus' error) or "unknown" (not scraped yet)."""
        active = self._get("/api/v1/targets", {"state": "active"})["activeTargets"]
        return {
            target["labels"].get("daemon", target["scrapeUrl"]):
                target["health"] + (f" ({target['lastError']})" if target.get("lastError") else "")
            for target in active
        }

    def scraped_all(self) -> bool:
        health = self.target_health()
        return len(health) == len(self.targets) and all(state == "up" for state in health.values())

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query through the HTTP API (``/api/v1/query``): its result, a list of series."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query (``/api/v1/query_range``), as Grafana draws a time series: each series with its values."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return self._get("/api/v1/query_range", params)["result"]

    def label_values(self, label: str, match: str) -> list[str]:
        """What Grafana's ``label_values(match, label)`` lists."""
        return sorted(self._get(f"/api/v1/label/{label}/values", {"match[]": match}))

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            answer = json.load(error)
        except (urllib.error.URLError, OSError) as error:
            raise PrometheusError(f"prometheus at {self.url} does not answer: {error}") from error
        if answer.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def stop(self) -> None:
        processes.stop([self.pid_file])
