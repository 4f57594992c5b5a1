"""Serving benchmarks on a lab host: worker scaling, proxy overhead, and the
plumberDeploy setup as the baseline, on the same host in the same run.

The bench API (bench/app/plumber.R) is deployed by the program's own commands
(the real __main__.py under mocks, carried out by tests/engine.py) as one app
per worker count (`bench1`, `bench2`, `bench4`, `bench8`), all at once, so every
configuration can be measured in every round. The baseline is what
plumberDeploy's do_deploy_api() sets up: one
`Rscript -e "pr <- plumber::pr(...); pr$run(port=8000)"` systemd unit as root,
behind an nginx `location /<path>/ { proxy_pass http://localhost:8000/; }`
(here a server block on port 8081 of the same nginx), removed again afterwards.

wrk runs inside the host's network namespace against its loopback, so nginx
and the direct-to-worker measurements take the same path, and worker ports
(closed by ufw from outside) are reachable. Every wrk run is bounded: one
WARMUP-second run per target, then ROUNDS interleaved rounds of SECONDS-second
runs over all targets (the machine is shared: interleaving spreads its load
changes over every target alike); the tables show the medians.

Afterwards, one app changed at a time (code, then workers) shows that only its
commands run, and how long a change takes to go out.
"""

from __future__ import annotations

import json
import shutil
import statistics
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
from tests.program import stack_config

ROOT = Path(__file__).resolve().parent.parent
APP_SOURCE = ROOT / "bench" / "app"
APP = "bench"
SECONDS = 5
WARMUP = 2
ROUNDS = 3
WORKERS = (1, 2, 4, 8)
CPU_WORKERS = (1, 2)
IO_CONNECTIONS = 16  # >= 2 per worker at 8 workers; the same offered load for every worker count
CPU_CONNECTIONS = 4
PING_CONNECTIONS = 8
CLOSE = ("-H", "Connection: close")
# One worker against plumberDeploy's process on the CPU-bound endpoint: the same R, the same work, the same
# host; below this, something (issue 23 point 15: worker threads left at nice 10) slows our worker down.
CPU_BASELINE_GOAL = 0.98

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
systemctl daemon-reload
systemctl restart plumber-{PD_PATH}
# nginx only once the process serves: `localhost` is [::1] and 127.0.0.1 to nginx, plumber listens on the
# latter, and a request refused by both marks them failed (no live upstreams, 502) for 10 s.
up=0
for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:{PD_PORT}/health; then up=1; break; fi
  sleep 0.5
done
if [ "$up" = 0 ]; then
  journalctl -u plumber-{PD_PATH} --no-pager -o cat -n 30 >&2
  exit 1
fi
cat >/etc/nginx/sites-enabled/bench-plumberdeploy <<'PD_EOF'
{PD_SITE}PD_EOF
nginx -t -q
systemctl reload nginx
sleep 1
curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:{PD_NGINX_PORT}/{PD_PATH}/health
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
    """One target measured ROUNDS times (bounded wrk runs); `result` holds the medians."""

    setup: str  # "ours" | "plumberDeploy"
    path: str  # "nginx" | "direct" | "direct keep-alive"
    endpoint: str  # "/io" | "/cpu" | "/ping"
    workers: int
    connections: int
    rounds: list[wrk.WrkResult] = field(default_factory=list)

    @property
    def result(self) -> wrk.WrkResult:
        return median_result(self.rounds)


def median_result(rounds: list[wrk.WrkResult]) -> wrk.WrkResult:
    """Medians of rate and latencies; totals of requests and failures."""
    return wrk.WrkResult(
        requests=sum(r.requests for r in rounds),
        rps=statistics.median(r.rps for r in rounds),
        p50_ms=statistics.median(r.p50_ms for r in rounds),
        p99_ms=statistics.median(r.p99_ms for r in rounds),
        non_2xx=sum(r.non_2xx for r in rounds),
        socket_errors=sum(r.socket_errors for r in rounds),
    )


@dataclass
class Target:
    measure: Measure
    url: str
    extra: tuple[str, ...] = ()


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
    threads: dict[str, dict[str, int]] = field(default_factory=dict)  # setup -> nice -> threads (ps -eLo)

    def find(self, setup: str, path: str, endpoint: str, workers: int = 1) -> Measure:
        for m in self.measures:
            if (m.setup, m.path, m.endpoint, m.workers) == (setup, path, endpoint, workers):
                return m
        raise KeyError((setup, path, endpoint, workers))


def app_name(workers: int) -> str:
    return f"{APP}{workers}"


def lab_config(h: HostState, sources: dict[int, Path], workers: dict[int, int] | None = None) -> dict[str, Any]:
    """One app per worker count (`bench1` .. `bench8`, those in `sources`), each with its own source and
    port range."""
    cfg = stack_config("local")
    cfg.update(host={"address": h.address, "user": "root", "port": 22}, ssh_private_key_file=h.key_path)
    cfg.pop("forward_root", None)
    cfg["apps"] = [
        {"name": app_name(w), "source": str(sources[w]), "workers": (workers or {}).get(w, w),
         "port": 20000 + 100 * i, "health_path": "/health"}
        for i, w in enumerate(WORKERS) if w in sources
    ]
    return cfg


def cpu_baseline(s: ServingResults) -> tuple[float, bool] | None:
    """1 worker ÷ plumberDeploy's process on `/cpu` (medians), and whether it reaches CPU_BASELINE_GOAL."""
    try:
        ratio = s.find("ours", "nginx", "/cpu", 1).result.rps / s.find("plumberDeploy", "nginx", "/cpu").result.rps
    except KeyError:
        return None
    return ratio, ratio >= CPU_BASELINE_GOAL


def cpu_baseline_line(s: ServingResults) -> str:
    got = cpu_baseline(s)
    if got is None:
        return "CPU endpoint, 1 worker ÷ plumberDeploy's process: not measured"
    ratio, ok = got
    return (f"CPU endpoint, 1 worker ÷ plumberDeploy's process: {ratio:.2f}× (bar: >= {CPU_BASELINE_GOAL}×): "
            f"{'PASS' if ok else 'FAIL'}")


def live_ports(result: UpResult, app: str) -> list[int]:
    """The worker ports an app's deploy reported (its last stdout line is JSON)."""
    step = next(s for s in result.steps if s.name == f"{app}-deploy")
    line = [ln for ln in step.stdout.splitlines() if ln.startswith("{")][-1]
    return [int(p) for p in json.loads(line)["ports"].split()]


class Serving:
    def __init__(self, lab: Lab, work: Path, log: Callable[[str], None] = print, cpu_only: bool = False) -> None:
        self.lab = lab
        self.h = lab.state.hosts[0]  # type: ignore[union-attr]
        self.prefix = ("ip", "netns", "exec", self.h.netns)
        self.cpu_only = cpu_only  # the /cpu rows alone (bench1, bench2 and the baseline): python -m bench.serving --cpu
        self.sources = {w: work / app_name(w) for w in (CPU_WORKERS if cpu_only else WORKERS)}
        for source in self.sources.values():
            shutil.copytree(APP_SOURCE, source)
        self.engine = Engine(work / "state.json")
        self.results = ServingResults()
        self.log = log

    # --- helpers --------------------------------------------------------------
    def sh(self, script: str, stdin: bytes | None = None) -> str:
        return self.lab.ssh(self.h.name, script, stdin=stdin, check=True, timeout=300).stdout.decode()

    def up(self, what: str, workers: dict[int, int] | None = None) -> UpResult:
        t0 = time.monotonic()
        _, result = self.engine.deploy(lab_config(self.h, self.sources, workers), stack="local")
        seconds = time.monotonic() - t0
        self.results.changes.append(Change(what, result.ran, seconds))
        self.log(f"  {what}: ran {result.ran or 'nothing'} in {seconds:.1f}s")
        return result

    def target(self, setup: str, path: str, endpoint: str, workers: int, url: str, connections: int,
               extra: tuple[str, ...] = ()) -> Target:
        m = Measure(setup, path, endpoint, workers, connections)
        self.results.measures.append(m)
        return Target(m, url, extra)

    def wrk(self, t: Target, seconds: int) -> wrk.WrkResult:
        proc = wrk.start(t.url, seconds, t.measure.connections, extra=t.extra, prefix=self.prefix)
        res = wrk.finish(proc, seconds)
        if res.failed:
            m = t.measure
            raise RuntimeError(f"{m.setup} {m.path} {m.endpoint} ({m.workers} workers): {res.failed} failed requests")
        return res

    # --- the run ------------------------------------------------------------------
    def run(self) -> ServingResults:
        counts = sorted(self.sources)
        first = self.up(f"first deploy ({len(counts)} apps: {', '.join(map(str, counts))} workers; "
                        "provision and site if new)")
        self.results.host = self.host_facts()
        noop = self.up("no-op up")
        assert noop.ran == [], noop.ran
        port = live_ports(first, app_name(1))[0]

        targets: list[Target] = []

        def ours(endpoint: str, workers: int, connections: int) -> None:
            url = f"http://127.0.0.1/{app_name(workers)}{endpoint}"
            targets.append(self.target("ours", "nginx", endpoint, workers, url, connections))

        pd = f"http://127.0.0.1:{PD_NGINX_PORT}/{PD_PATH}"
        # 1. I/O-bound, by worker count, and the baseline next to it
        if not self.cpu_only:
            for w in WORKERS:
                ours("/io", w, IO_CONNECTIONS)
            targets.append(self.target("plumberDeploy", "nginx", "/io", 1, f"{pd}/io", IO_CONNECTIONS))
        # 2. CPU-bound
        for w in CPU_WORKERS:
            ours("/cpu", w, CPU_CONNECTIONS)
        targets.append(self.target("plumberDeploy", "nginx", "/cpu", 1, f"{pd}/cpu", CPU_CONNECTIONS))
        # 3. proxy overhead: nginx -> one worker vs straight to it; 4. the same for plumberDeploy
        if not self.cpu_only:
            ours("/ping", 1, PING_CONNECTIONS)
            direct = f"http://127.0.0.1:{port}/ping"
            targets.append(self.target("ours", "direct", "/ping", 1, direct, PING_CONNECTIONS, CLOSE))
            targets.append(self.target("ours", "direct keep-alive", "/ping", 1, direct, PING_CONNECTIONS))
            targets.append(self.target("plumberDeploy", "nginx", "/ping", 1, f"{pd}/ping", PING_CONNECTIONS))
            targets.append(self.target("plumberDeploy", "direct", "/ping", 1, f"http://127.0.0.1:{PD_PORT}/ping",
                                       PING_CONNECTIONS, CLOSE))

        self.sh(PD_UP, stdin=(APP_SOURCE / "plumber.R").read_bytes())
        self.results.threads = self.thread_nice()
        self.log(f"  threads per nice (ps -eLo ni): {self.results.threads}")
        try:
            for t in targets:
                self.wrk(t, WARMUP)
            # Interleaved: every target once per round, so drift in the machine's load hits all of them alike.
            for n in range(ROUNDS):
                self.log(f"  round {n + 1}/{ROUNDS}")
                for t in targets:
                    res = self.wrk(t, SECONDS)
                    t.measure.rounds.append(res)
                    m = t.measure
                    self.log(f"    {m.setup:13} {m.path:17} {m.endpoint:5} workers={m.workers} c={m.connections:2}: "
                             f"{res.rps:8.1f} req/s  p50 {res.p50_ms:7.1f} ms  p99 {res.p99_ms:7.1f} ms")
        finally:
            self.sh(PD_DOWN)
        self.log(f"  {cpu_baseline_line(self.results)}")

        if not self.cpu_only:
            self.changes()
        t0 = time.monotonic()
        gone = self.engine.destroy()
        self.results.changes.append(Change("destroy", gone.ran, time.monotonic() - t0))
        return self.results

    def changes(self) -> None:
        """One app changed at a time: only that app's commands run."""
        big = WORKERS[-1]
        p = self.sources[big] / "plumber.R"
        p.write_text(p.read_text() + "\n# release 2\n")
        code = self.up(f"code change of `{app_name(big)}` (rolling release of {big} workers)")
        scaled = self.up(f"scale `{app_name(2)}` from 2 to 3 workers", {2: 3})
        for result, app in ((code, app_name(big)), (scaled, app_name(2))):
            assert result.ran and all(r.startswith(f"update {app}-") for r in result.ran), result.ran

    def thread_nice(self) -> dict[str, dict[str, int]]:
        """`bench1` (1 worker) and plumberDeploy's process: how many of their threads run at each nice."""
        out: dict[str, dict[str, int]] = {}
        for line in self.sh("ps -eLo unit=,ni=").splitlines():
            unit, ni = line.split()
            who = ("plumber-hosting, 1 worker" if unit.startswith(f"plumber-{app_name(1)}@")
                   else "plumberDeploy" if unit == f"plumber-{PD_PATH}.service" else None)
            if who:
                out.setdefault(who, {})
                out[who][ni] = out[who].get(ni, 0) + 1
        return out

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


def run(log: Callable[[str], None] = print, cpu_only: bool = False) -> ServingResults:
    """Stand up the lab if it is down (and take it down again), run, clean up."""
    lab = Lab()
    started = not lab.is_up()
    if started:
        log("lab: starting one host")
        lab.up(1)
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    serving = Serving(lab, work, log, cpu_only=cpu_only)
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


def main(argv: list[str] | None = None) -> int:
    """python -m bench.serving --cpu: the CPU-bound rows alone (1 and 2 workers and plumberDeploy's process,
    ROUNDS interleaved rounds, about 2 minutes); exits 1 if 1 worker ÷ plumberDeploy is below CPU_BASELINE_GOAL.
    The whole serving part runs in `make bench`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=main.__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", required=True, help="the /cpu rows and the baseline only")
    parser.parse_args(argv)
    results = run(log=lambda s: print(s, flush=True), cpu_only=True)
    got = cpu_baseline(results)
    return 0 if got is not None and got[1] else 1


if __name__ == "__main__":
    import sys

    sys.exit(main())
