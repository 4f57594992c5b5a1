"""make bench-release: what clients notice of a release, measured with three real clients.

Same lab host, same app (examples/hello, 2 workers), three clients side by side
from the host's own network namespace (bench/clients.py): wrk (keep-alive GET,
no retries), urllib3 GET (keep-alive, retries an idempotent request whose
connection was closed, as HTTP clients do) and urllib3 POST (never resent once
sent). Each client runs CLIENT_SECONDS, paced (bounded in time and count); the
change starts after SETTLE seconds. Setups, in one run:

  * plumber-hosting: RUNS changed releases in a row, each rolled out by the
    program's own deploy command (the route chosen for issue 15: a stable
    upstream, each worker taken out by refusing nginx's new connections to it,
    drained, restarted, health-gated, put back; no nginx reload);
  * candidate "restart without drain": the same stable upstream and
    proxy_next_upstream, each worker just restarted (SIGTERM) in turn and
    health-gated (what the route would be without taking the worker out);
  * in place: `systemctl restart` of a plumberDeploy-style unit behind nginx
    (bench/serving.py's baseline: one R process, what plumberDeploy's redeploy does).

Per setup and client: requests, non-2xx, socket errors, p50, p99, and p99 of
the requests that ended during the change / p99 of those outside it; plus the
nginx reloads the change caused. Writes bench/release-results.md and
bench/release.png.
"""

from __future__ import annotations

import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

from bench import clients, wrk
from bench.serving import PD_DOWN, PD_NGINX_PORT, PD_PATH, PD_UP
from tests.engine import Engine
from tests.lab.lab import Lab
from tests.program import stack_config

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "release-results.md"
PLOT = ROOT / "bench" / "release.png"
RUNS = 3
SETTLE = 8  # seconds of steady load before the change
CLIENT_SECONDS = 36  # each client's whole run; the change must end TAIL seconds before
TAIL = 4
WRK_CONNECTIONS = 2
WRK_DELAY_MS = 40  # wrk waits this long after each response (per connection)
INTERVAL_MS = 40  # urllib3 clients: one request every INTERVAL_MS
MAX_RATIO = 1.5
# This process (the program under tests/engine.py: what runs on the operator's machine, not on the
# server) yields the CPU to the clients and the lab host, which share this machine's cores with it.
NICE = 10
SLOW_MS = 900  # the in-flight check: POSTs that take this long in R ...
SLOW_EVERY = 0.5  # ... one started every SLOW_EVERY s while the change runs (at most SLOW_MAX)
SLOW_MAX = 120
WORK_ENDPOINT = """
#* bench-release: work on a posted body for `ms` milliseconds (a request in flight during a release).
#* @post /work
#* @serializer unboxedJSON
function(req, ms = 0) {
  Sys.sleep(as.numeric(ms) / 1000)
  list(received = nchar(req$postBody))
}
"""
CLIENTS = ("wrk", "get-retry", "post")
LABELS = {"wrk": "wrk GET (keep-alive, no retry)", "get-retry": "urllib3 GET (retries idempotent)", "post": "urllib3 POST"}


@dataclass
class Sample:
    t: float  # end, epoch seconds
    ms: float
    outcome: str  # HTTP status or error:<kind>

    @property
    def ok(self) -> bool:
        return self.outcome.startswith("2")


@dataclass
class ClientResult:
    kind: str
    samples: list[Sample]
    requests: int
    non_2xx: int
    socket_errors: int
    window: tuple[float, float]
    failed_at: list[float] = field(default_factory=list)  # when failed requests ended (python clients)

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors

    def p(self, q: float, within: bool | None = None) -> float:
        lat = [s.ms for s in self.samples
               if within is None or (self.window[0] <= s.t <= self.window[1]) == within]
        return statistics.quantiles(lat, n=1000, method="inclusive")[int(q * 10) - 1] if len(lat) > 1 else float("nan")

    @property
    def ratio(self) -> float:
        return self.p(99, within=True) / self.p(99, within=False)


@dataclass
class InFlight:
    """Slow POSTs sent while a change ran: how many, how many failed (non-2xx or no answer)."""

    setup: str
    sent: int
    failed: int
    outcomes: dict[str, int]
    change_s: float
    reloads: int


@dataclass
class Phase:
    setup: str
    change_s: float
    reloads: int
    results: dict[str, ClientResult] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.results.values())


def lab_config(lab: Lab, source: Path) -> dict[str, Any]:
    h = lab.state.hosts[0]  # type: ignore[union-attr]
    cfg = stack_config("local")
    cfg.update(host={"address": h.address, "user": "root", "port": 22}, ssh_private_key_file=h.key_path)
    cfg.pop("forward_root", None)
    cfg["apps"] = [{"name": "hello", "source": str(source), "workers": 2, "health_path": "/health"}]
    return cfg


def bump(source: Path, n: int) -> None:
    p = source / "plumber.R"
    p.write_text(p.read_text().split("\n# release ")[0] + f"\n# release {n}\n")


def read_samples(paths: list[Path]) -> list[Sample]:
    out = []
    for p in paths:
        for line in p.read_text().splitlines() if p.exists() else []:
            t, ms, outcome = line.split()
            out.append(Sample(float(t), float(ms), outcome))
    return sorted(out, key=lambda s: s.t)


class Clients:
    """The three clients against one base URL, started together, bounded in time and count."""

    def __init__(self, prefix: tuple[str, ...], base: str, work: Path, tag: str) -> None:
        self.dir = work / tag
        self.dir.mkdir()
        script = work / "timing.lua"
        script.write_text(clients.WRK_SCRIPT)
        env = {**os.environ, "PH_DELAY_MS": str(WRK_DELAY_MS)}
        prefix = (*prefix, "nice", "-n", str(-os.nice(0)))  # the clients at nice 0
        py = [*prefix, sys.executable, "-m", "bench.clients"]
        self.procs = {
            "wrk": subprocess.Popen(
                [*prefix, *clients.wrk_command(f"{base}/hello?name=bench", CLIENT_SECONDS, WRK_CONNECTIONS, script, self.dir / "wrk")],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env),
            "get-retry": subprocess.Popen(
                [*py, "get-retry", f"{base}/hello?name=bench", str(CLIENT_SECONDS), str(INTERVAL_MS), str(self.dir / "get-retry")],
                cwd=ROOT),
            "post": subprocess.Popen(
                [*py, "post", f"{base}/echo", str(CLIENT_SECONDS), str(INTERVAL_MS), str(self.dir / "post")], cwd=ROOT),
        }
        self.started = time.time()

    def finish(self, window: tuple[float, float]) -> dict[str, ClientResult]:
        out: dict[str, ClientResult] = {}
        wrk_out, _ = self.procs["wrk"].communicate(timeout=CLIENT_SECONDS + 30)
        for kind in ("get-retry", "post"):
            self.procs[kind].wait(timeout=CLIENT_SECONDS + 30)
        w = wrk.parse(wrk_out)
        samples = read_samples(sorted(self.dir.glob("wrk.*")))
        out["wrk"] = ClientResult("wrk", [s for s in samples if s.ok], w.requests, w.non_2xx, w.socket_errors, window)
        for kind in ("get-retry", "post"):
            samples = read_samples([self.dir / kind])
            errors = sum(s.outcome.startswith("error") for s in samples)
            non2xx = sum(not s.ok and not s.outcome.startswith("error") for s in samples)
            out[kind] = ClientResult(kind, [s for s in samples if s.ok], len(samples), non2xx, errors, window,
                                     [s.t for s in samples if not s.ok])
        return out


def nginx_reloads(lab: Lab, host: str, since: float) -> int:
    out = lab.ssh(host, f"journalctl -u nginx --since @{int(since)} -o cat --no-pager | grep -c '^Reloaded' || true").stdout
    return int(out.decode().strip() or 0)


def measure(lab: Lab, host: str, prefix: tuple[str, ...], base: str, work: Path, tag: str, setup: str, change: Any) -> Phase:
    load = Clients(prefix, base, work, tag)
    time.sleep(SETTLE)
    t0 = time.time()
    change()
    t1 = time.time()
    if t1 - load.started > CLIENT_SECONDS - TAIL:
        raise RuntimeError(f"{setup}: the change took {t1 - t0:.1f}s, longer than the clients run; raise CLIENT_SECONDS")
    phase = Phase(setup, t1 - t0, nginx_reloads(lab, host, t0 - 1))
    phase.results = load.finish((t0, t1))
    return phase


def in_flight(lab: Lab, host: str, url: str, setup: str, change: Any) -> InFlight:
    """Run `change` while POSTs that take SLOW_MS each keep every worker busy (bounded: SLOW_MAX)."""
    pool = urllib3.PoolManager(maxsize=16, timeout=urllib3.Timeout(connect=5, read=60))

    def post() -> str:
        t = time.time()
        try:
            outcome = str(pool.request("POST", url, body=clients.BODY, headers={"Content-Type": "application/json"}).status)
        except urllib3.exceptions.HTTPError as e:
            outcome = f"error:{type(getattr(e, 'reason', None) or e).__name__}"
        if not outcome.startswith("2"):
            print(f"{setup}: slow POST sent at {t:.3f} ended {time.time():.3f}: {outcome}")
        return outcome

    futures: list[Future[str]] = []
    done = threading.Event()

    def spawn(ex: ThreadPoolExecutor) -> None:  # one slow POST every SLOW_EVERY s until the change is done
        while not done.is_set() and len(futures) < SLOW_MAX:
            futures.append(ex.submit(post))
            done.wait(SLOW_EVERY)

    with ThreadPoolExecutor(max_workers=16) as ex:
        spawner = threading.Thread(target=spawn, args=(ex,))
        spawner.start()
        time.sleep(4 * SLOW_EVERY)  # both workers busy before the change starts
        t0 = time.time()
        try:
            change()  # in this thread: the engine needs the main thread's event loop
        finally:
            t1 = time.time()
            done.set()
            spawner.join()
    outcomes: dict[str, int] = {}
    for f in futures:
        outcomes[f.result()] = outcomes.get(f.result(), 0) + 1
    failed = sum(n for o, n in outcomes.items() if not o.startswith("2"))
    print(f"{setup}: change {t0:.3f} .. {t1:.3f}; nginx errors other than refused connects:")
    print(lab.ssh(host, f"journalctl --since @{int(t0) - 3} -o short-unix --no-pager -t nginx -t plumber-hello | tail -n 30; "
                  "grep -v '(111: Connection refused)' /var/log/nginx/error.log | tail -n 20").stdout.decode())
    return InFlight(setup, len(futures), failed, outcomes, t1 - t0, nginx_reloads(lab, host, t0 - 1))


def table(phases: list[Phase]) -> str:
    rows = ["| setup | client | requests | non-2xx | socket errors | p50 ms | p99 ms | p99 release ÷ steady | change s | nginx reloads |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for ph in phases:
        for kind in CLIENTS:
            r = ph.results[kind]
            rows.append(f"| {ph.setup} | {LABELS[kind]} | {r.requests} | {r.non_2xx} | {r.socket_errors} | {r.p(50):.1f} | "
                        f"{r.p(99):.1f} | {r.ratio:.2f} | {ph.change_s:.1f} | {ph.reloads} |")
    return "\n".join(rows)


def plot(phases: list[Phase]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(phases), 1, figsize=(10, 2.6 * len(phases)), sharex=True)
    colors = {"wrk": "tab:blue", "get-retry": "tab:green", "post": "tab:orange"}
    for ax, ph in zip(axes, phases, strict=True):
        r0 = ph.results["wrk"]
        t_start = min(r.samples[0].t for r in ph.results.values() if r.samples)
        ax.axvspan(r0.window[0] - t_start, r0.window[1] - t_start, color="0.85", label="release window")
        for kind in CLIENTS:
            r = ph.results[kind]
            bins: dict[int, list[float]] = {}
            for s in r.samples:
                bins.setdefault(int((s.t - t_start) * 2), []).append(s.ms)
            xs = list(range(0, max(bins) + 1)) if bins else []
            ax.plot([x / 2 for x in xs], [max(bins[x]) if x in bins else float("nan") for x in xs],
                    color=colors[kind], lw=1, label=f"{LABELS[kind]}: failed {r.failed}")
            if r.failed_at:
                ax.plot([t - t_start for t in r.failed_at], [1.5] * len(r.failed_at), "|", color=colors[kind], ms=8)
        ax.set_yscale("log")
        ax.set_ylim(1, None)
        ax.set_ylabel("max latency\nper 0.5 s (ms)")
        ax.set_title(f"{ph.setup}: {ph.failed} failed, {ph.reloads} nginx reloads", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("seconds since the clients started")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def main() -> int:
    lab = Lab()
    started_lab = not lab.is_up()
    if started_lab:
        lab.up(1)
    os.nice(NICE)  # after the lab host started: its processes keep nice 0
    phases: list[Phase] = []
    inflight: list[InFlight] = []
    try:
        h = lab.state.hosts[0]  # type: ignore[union-attr]
        prefix = ("ip", "netns", "exec", h.netns)
        work = Path(tempfile.mkdtemp(prefix="bench-release-"))
        source = work / "hello"
        shutil.copytree(ROOT / "examples" / "hello", source)
        (source / "plumber.R").write_text((source / "plumber.R").read_text() + WORK_ENDPOINT)
        engine = Engine(work / "state.json")
        cfg = lab_config(lab, source)
        engine.deploy(cfg, stack="local")
        lab.ssh(h.name, PD_UP, stdin=(source / "plumber.R").read_bytes(), check=True, timeout=300)
        ours = "http://127.0.0.1/hello"
        wrk.run(f"{ours}/hello?name=bench", 2, prefix=prefix)  # warm up

        def release(n: int) -> Any:
            def go() -> None:
                bump(source, n)
                _, result = engine.deploy(cfg, stack="local")
                assert result.ran == ["update hello-upload", "update hello-deploy"], result.ran
                print(f"release {n}, at {time.time():.3f}:\n{next(s.stderr for s in result.steps if s.name == 'hello-deploy')}")
            return go

        for n in range(1, RUNS + 1):
            phases.append(measure(lab, h.name, prefix, ours, work, f"ours{n}", f"plumber-hosting release, run {n}", release(n)))

        ports = lab.ssh(h.name, "cat /etc/plumber-hosting/health/hello", check=True).stdout.decode().split()[2:4]
        restart_each = "set -euo pipefail\n" + "".join(
            f"systemctl restart plumber-hello@{p}\n"
            f"for _ in $(seq 1 120); do curl -fs -o /dev/null http://127.0.0.1:{p}/health && break; sleep 0.5; done\n"
            "sleep 2.2\n" for p in ports)
        phases.append(measure(lab, h.name, prefix, ours, work, "nodrain", "candidate: restart without drain",
                              lambda: lab.ssh(h.name, restart_each, check=True, timeout=120)))

        slow = f"http://{h.address}/hello/work?ms={SLOW_MS}"
        inflight.append(in_flight(lab, h.name, slow, "plumber-hosting release", release(RUNS + 1)))
        inflight.append(in_flight(lab, h.name, slow, "candidate: restart without drain",
                                  lambda: lab.ssh(h.name, restart_each, check=True, timeout=120)))

        pd_restart = ("set -euo pipefail\nsystemctl restart plumber-pdbench\n"
                      "for _ in $(seq 1 120); do curl -fs -o /dev/null http://127.0.0.1:8000/health && break; sleep 0.5; done\n")
        phases.append(measure(lab, h.name, prefix, f"http://127.0.0.1:{PD_NGINX_PORT}/{PD_PATH}", work, "inplace",
                              "in place: plumberDeploy unit restarted",
                              lambda: lab.ssh(h.name, pd_restart, check=True, timeout=120)))
        lab.ssh(h.name, PD_DOWN, check=True)
        engine.destroy()
    finally:
        if started_lab:
            lab.down()

    ours_runs = phases[:RUNS]
    worst = max(r.ratio for ph in ours_runs for r in ph.results.values())
    failed = [ph.failed for ph in ours_runs]
    verdict = (f"plumber-hosting, {RUNS} consecutive releases: failed requests per run {failed} (every client); "
               f"worst p99 release ÷ steady {worst:.2f} (bar: ≤ {MAX_RATIO}); nginx reloads per release "
               f"{[ph.reloads for ph in ours_runs]}")
    ok = all(f == 0 for f in failed) and worst <= MAX_RATIO and inflight[0].failed == 0
    plot([ours_runs[0], phases[RUNS], phases[RUNS + 1]])
    text = (
        "# bench-release: what clients notice of a release\n\n"
        f"Written by `make bench-release` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC "
        f"(lab host, {os.cpu_count()}-core shared machine). App examples/hello, 2 workers. Clients side by side inside the "
        f"host's network namespace, {CLIENT_SECONDS} s each, change at t={SETTLE} s: wrk -t{WRK_CONNECTIONS} "
        f"-c{WRK_CONNECTIONS} GET with {WRK_DELAY_MS} ms between requests per connection; urllib3 GET and POST, "
        f"one request every {INTERVAL_MS} ms each. p50/p99 over every request; the ratio compares the p99 of "
        "requests that ended during the change with the p99 of those outside it.\n\n"
        f"{table(phases)}\n\n{verdict}: {'PASS' if ok else 'FAIL'}\n\n"
        f"A request in flight when its worker goes: POSTs that take {SLOW_MS} ms in R, one sent every {SLOW_EVERY} s "
        "(keeping both workers busy) while the change runs, without the clients above:\n\n"
        "| setup | slow POSTs | failed | outcomes | change s | nginx reloads |\n|---|---:|---:|---|---:|---:|\n"
        + "".join(f"| {i.setup} | {i.sent} | {i.failed} | {i.outcomes} | {i.change_s:.1f} | {i.reloads} |\n" for i in inflight)
        + "\n![latency over time](release.png)\n"
    )
    RESULTS.write_text(text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
