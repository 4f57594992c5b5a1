"""Serving benchmarks on a lab host: worker scaling, proxy overhead, and the
plumberDeploy setup as the baseline, on the same host in the same run.

The bench API (bench/app/plumber.R) is deployed by the program's own commands
(the real __main__.py under mocks, carried out by tests/engine.py) and scaled
1 -> 2 -> 4 -> 8 workers the same way. The baseline is what plumberDeploy's
do_deploy_api() sets up: one `Rscript -e "pr <- plumber::pr(...); pr$run(port=8000)"`
systemd unit as root, behind an nginx `location /<path>/ { proxy_pass http://localhost:8000/; }`
(here a server block on port 8081 of the same nginx), removed again afterwards.

wrk runs inside the host's network namespace against its loopback, so nginx
and the direct-to-worker measurements take the same path, and worker ports
(closed by ufw from outside) are reachable. Every wrk run is bounded: a
WARMUP-second run, then a SECONDS-second measured one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import wrk
from tests.engine import Engine, UpResult
from tests.lab.lab import HostState, Lab
from tests.program import run_program, stack_config

ROOT = Path(__file__).resolve().parent.parent
APP_SOURCE = ROOT / "bench" / "app"
APP = "bench"
SECONDS = 8
WARMUP = 2
WORKERS = (1, 2, 4, 8)
CPU_WORKERS = (1, 2)
IO_CONNECTIONS = 16  # >= 2 per worker at 8 workers; the same offered load for every worker count
CPU_CONNECTIONS = 4
PING_CONNECTIONS = 8
CLOSE = ("-H", "Connection: close")

# plumberDeploy's files (inst/server/plumber.service and plumber-api.conf), filled in
# as do_deploy_api(path = "pdbench", port = 8000) fills them in.
PD_PATH = "pdbench"
PD_PORT = 8000
PD_NGINX_PORT = 8081
PD_UNIT = f"""[Unit]
Description=Plumber API

[Service]
ExecStart=/usr/bin/Rscript -e "pr <- plumber::pr('/var/plumber/{PD_PATH}/plumber.R'); pr$setDocs(FALSE);  pr$run(port={PD_PORT})"
Restart=on-abnormal
WorkingDirectory=/var/plumber/{PD_PATH}/

[Install]
WantedBy=multi-user.target
"""
PD_SITE = f"""server {{
  listen {PD_NGINX_PORT};
  server_name _;
  location /{PD_PATH}/ {{
    proxy_pass http://localhost:{PD_PORT}/;
    proxy_set_header Host $host;
  }}
}}
"""
PD_UP = f"""set -euo pipefail
install -d -m 0755 /var/plumber/{PD_PATH}
cat >/var/plumber/{PD_PATH}/plumber.R
cat >/etc/systemd/system/plumber-{PD_PATH}.service <<'PD_EOF'
{PD_UNIT}PD_EOF
cat >/etc/nginx/sites-enabled/bench-plumberdeploy <<'PD_EOF'
{PD_SITE}PD_EOF
systemctl daemon-reload
systemctl restart plumber-{PD_PATH}
nginx -t -q
systemctl reload nginx
for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:{PD_NGINX_PORT}/{PD_PATH}/health; then exit 0; fi
  sleep 0.5
done
journalctl -u plumber-{PD_PATH} --no-pager -o cat -n 30 >&2
exit 1
"""
PD_DOWN = f"""set -euo pipefail
systemctl disable --now --quiet plumber-{PD_PATH} 2>/dev/null || true
rm -f /etc/systemd/system/plumber-{PD_PATH}.service /etc/nginx/sites-enabled/bench-plumberdeploy
rm -rf /var/plumber/{PD_PATH}
rmdir /var/plumber 2>/dev/null || true
systemctl daemon-reload
nginx -t -q
systemctl reload nginx
"""


@dataclass
class Measure:
    """One bounded wrk run."""

    setup: str  # "ours" | "plumberDeploy"
    path: str  # "nginx" | "direct" | "direct keep-alive"
    endpoint: str  # "/io" | "/cpu" | "/ping"
    workers: int
    connections: int
    result: wrk.WrkResult


@dataclass
class Change:
    """One `up` on the lab host: what ran and how long it took."""

    what: str
    ran: list[str]
    seconds: float


@dataclass
class ServingResults:
    measures: list[Measure] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    host: dict[str, str] = field(default_factory=dict)

    def find(self, setup: str, path: str, endpoint: str, workers: int = 1) -> Measure:
        for m in self.measures:
            if (m.setup, m.path, m.endpoint, m.workers) == (setup, path, endpoint, workers):
                return m
        raise KeyError((setup, path, endpoint, workers))


def lab_config(h: HostState, source: Path, workers: int) -> dict[str, Any]:
    cfg = stack_config("local")
    cfg.update(host={"address": h.address, "user": "root", "port": 22}, ssh_private_key_file=h.key_path)
    cfg.pop("forward_root", None)
    cfg["apps"] = [{"name": APP, "source": str(source), "workers": workers, "health_path": "/health"}]
    return cfg


def live_ports(result: UpResult) -> list[int]:
    """The worker ports the deploy reported (its last stdout line is JSON)."""
    step = next(s for s in result.steps if s.name == f"{APP}-deploy")
    line = [ln for ln in step.stdout.splitlines() if ln.startswith("{")][-1]
    return [int(p) for p in json.loads(line)["ports"].split()]


class Serving:
    def __init__(self, lab: Lab, work: Path, log: Callable[[str], None] = print) -> None:
        self.lab = lab
        self.h = lab.state.hosts[0]  # type: ignore[union-attr]
        self.prefix = ("ip", "netns", "exec", self.h.netns)
        self.work = work
        self.source = work / "app"
        shutil.copytree(APP_SOURCE, self.source)
        self.engine = Engine(work / "state.json")
        self.results = ServingResults()
        self.log = log

    # --- helpers --------------------------------------------------------------
    def sh(self, script: str, stdin: bytes | None = None) -> str:
        return self.lab.ssh(self.h.name, script, stdin=stdin, check=True, timeout=300).stdout.decode()

    def up(self, what: str, workers: int) -> UpResult:
        program = run_program(lab_config(self.h, self.source, workers), stack="local")
        t0 = time.monotonic()
        result = self.engine.up(program)
        self.results.changes.append(Change(what, result.ran, time.monotonic() - t0))
        self.log(f"  {what}: ran {result.ran or 'nothing'} in {time.monotonic() - t0:.1f}s")
        return result

    def measure(
        self, setup: str, path: str, endpoint: str, workers: int, url: str, connections: int, extra: tuple[str, ...] = ()
    ) -> Measure:
        wrk.finish(wrk.start(url, WARMUP, connections, extra=extra, prefix=self.prefix), WARMUP)
        res = wrk.finish(wrk.start(url, SECONDS, connections, extra=extra, prefix=self.prefix), SECONDS)
        if res.failed:
            raise RuntimeError(f"{setup} {path} {endpoint} ({workers} workers): {res.failed} failed requests")
        m = Measure(setup, path, endpoint, workers, connections, res)
        self.results.measures.append(m)
        self.log(f"  {setup:13} {path:17} {endpoint:5} workers={workers} c={connections:2}: "
                 f"{res.rps:8.1f} req/s  p50 {res.p50_ms:7.1f} ms  p99 {res.p99_ms:7.1f} ms")
        return m

    def ours(self, endpoint: str, workers: int, connections: int) -> Measure:
        return self.measure("ours", "nginx", endpoint, workers, f"http://127.0.0.1/{APP}{endpoint}", connections)

    # --- the run ------------------------------------------------------------------
    def run(self) -> ServingResults:
        first = self.up("first deploy (1 worker; provision and site if new)", 1)
        self.results.host = self.host_facts()
        port = live_ports(first)[0]
        noop = self.up("no-op up", 1)
        assert noop.ran == [], noop.ran

        # 3. proxy overhead: nginx -> the one worker vs straight to it
        self.ours("/ping", 1, PING_CONNECTIONS)
        direct = f"http://127.0.0.1:{port}/ping"
        self.measure("ours", "direct", "/ping", 1, direct, PING_CONNECTIONS, CLOSE)
        self.measure("ours", "direct keep-alive", "/ping", 1, direct, PING_CONNECTIONS)

        # 1. and 2. worker scaling, each step deployed by the program
        for workers in WORKERS:
            if workers > 1:
                scaled = self.up(f"scale to {workers} workers", workers)
                assert scaled.ran == [f"update {APP}-deploy"], scaled.ran
            self.ours("/io", workers, IO_CONNECTIONS)
            if workers in CPU_WORKERS:
                self.ours("/cpu", workers, CPU_CONNECTIONS)
        self.code_change()

        # 4. the plumberDeploy setup on the same host
        self.sh(PD_UP, stdin=(APP_SOURCE / "plumber.R").read_bytes())
        try:
            base = f"http://127.0.0.1:{PD_NGINX_PORT}/{PD_PATH}"
            self.measure("plumberDeploy", "nginx", "/io", 1, f"{base}/io", IO_CONNECTIONS)
            self.measure("plumberDeploy", "nginx", "/cpu", 1, f"{base}/cpu", CPU_CONNECTIONS)
            self.measure("plumberDeploy", "nginx", "/ping", 1, f"{base}/ping", PING_CONNECTIONS)
            self.measure("plumberDeploy", "direct", "/ping", 1, f"http://127.0.0.1:{PD_PORT}/ping",
                         PING_CONNECTIONS, CLOSE)
        finally:
            self.sh(PD_DOWN)

        t0 = time.monotonic()
        gone = self.engine.destroy()
        self.results.changes.append(Change("destroy", gone.ran, time.monotonic() - t0))
        return self.results

    def code_change(self) -> None:
        """One app's code changed: one command, a rolling release of its workers."""
        p = self.source / "plumber.R"
        p.write_text(p.read_text() + "\n# release 2\n")
        workers = WORKERS[-1]
        changed = self.up(f"code change ({workers} workers, rolling)", workers)
        assert changed.ran == [f"update {APP}-deploy"], changed.ran

    def host_facts(self) -> dict[str, str]:
        lines = self.sh(
            "set -euo pipefail; nproc; uname -r; . /etc/os-release; echo \"$PRETTY_NAME\"; nginx -v 2>&1 | head -1; "
            "Rscript -e 'cat(R.version.string, \"plumber\", format(packageVersion(\"plumber\")), "
            "\"httpuv\", format(packageVersion(\"httpuv\")), \"\\n\")'"
        ).splitlines()
        wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        keys = ("cores", "kernel", "os", "nginx", "r")
        facts = dict(zip(keys, (ln.strip() for ln in lines), strict=True))
        facts["wrk"] = (wrk_v.stdout + wrk_v.stderr).splitlines()[0].strip()
        return facts


def run(log: Callable[[str], None] = print) -> ServingResults:
    """Stand up the lab if it is down (and take it down again), run, clean up."""
    lab = Lab()
    started = not lab.is_up()
    if started:
        log("lab: starting one host")
        lab.up(1)
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    serving = Serving(lab, work, log)
    try:
        return serving.run()
    except BaseException:
        if Engine(work / "state.json").load():  # leave the host as found even after a failure
            try:
                serving.sh(PD_DOWN)
                serving.engine.destroy()
            except Exception as exc:  # report the first failure, not the clean-up's
                log(f"clean-up after failure failed too: {exc}")
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if started:
            log("lab: stopping it again")
            lab.down()
