"""make bench-release: failed requests and p99 latency during a redeploy.

Same lab host, same app (examples/hello, 2 workers), same wrk load, one run:
  * plumber-hosting: a changed release rolled out by the program's own deploy
    command (health-gated, drained, one worker at a time);
  * in place: `systemctl restart` of the app's workers, which is what
    plumberDeploy's redeploy does.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import wrk
from tests.engine import Engine
from tests.lab.lab import Lab
from tests.program import stack_config

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 20


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


def main() -> None:
    lab = Lab()
    started_lab = not lab.is_up()
    if started_lab:
        lab.up(1)
    try:
        h = lab.state.hosts[0]  # type: ignore[union-attr]
        work = Path(tempfile.mkdtemp(prefix="bench-release-"))
        source = work / "hello"
        shutil.copytree(ROOT / "examples" / "hello", source)
        engine = Engine(work / "state.json")
        cfg = lab_config(lab, source)
        engine.deploy(cfg, stack="local")
        url = f"http://{h.address}/hello/hello?name=bench"
        wrk.run(url, 3)  # warm up

        rows = []
        # plumber-hosting: a new release, rolled out by the program
        bump(source, 1)
        proc = wrk.start(url, SECONDS)
        time.sleep(5)
        t0 = time.monotonic()
        _, result = engine.deploy(cfg, stack="local")
        deploy_s = time.monotonic() - t0
        assert result.ran == ["update hello-upload", "update hello-deploy"], result.ran
        rows.append(("plumber-hosting rolling release", wrk.finish(proc, SECONDS), deploy_s))

        # in place: systemctl restart of every worker (plumberDeploy)
        proc = wrk.start(url, SECONDS)
        time.sleep(5)
        t0 = time.monotonic()
        lab.ssh(h.name, "systemctl restart 'plumber-hello@*'", check=True)
        restart_s = time.monotonic() - t0
        rows.append(("in-place systemctl restart", wrk.finish(proc, SECONDS), restart_s))

        print(f"\nRedeploy under load: wrk -t2 -c8 -d{SECONDS}s on GET /hello/hello, change at t=5s, same host, same run\n")
        print("| setup | requests | failed (non-2xx + socket errors) | p50 ms | p99 ms | change took s |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, r, s in rows:
            print(f"| {name} | {r.requests} | {r.failed} ({r.non_2xx} + {r.socket_errors}) | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {s:.1f} |")
        ours, theirs = rows[0][1], rows[1][1]
        print(f"\nfailed requests: {ours.failed} vs {theirs.failed}; p99 ratio (ours / in-place): {ours.p99_ms / theirs.p99_ms:.2f}")
        engine.destroy()
    finally:
        if started_lab:
            lab.down()


if __name__ == "__main__":
    sys.exit(main())
