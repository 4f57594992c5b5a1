"""make bench-release: failed requests and latency while a new release goes out.

Same lab host, same app (examples/hello), same wrk load, one run, two setups:
  * plumber-hosting (2 workers): a changed release rolled out by the program's
    own deploy command (health-gated, drained, one worker at a time);
  * plumberDeploy in place: the unit and nginx location its do_deploy_api()
    writes (bench/serving.py's baseline: one `Rscript -e "pr$run(...)"` process
    as root behind `proxy_pass http://localhost:8000/`), redeployed as
    plumberDeploy does it: `systemctl restart` of that unit.

wrk runs inside the host's network namespace against 127.0.0.1 (as in
bench/serving.py), for 20 s, with the change at t=5 s. Writes
bench/release-results.md (or --out) and prints it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import wrk
from bench.serving import PD_DOWN, PD_NGINX_PORT, PD_PATH, PD_UP
from tests.engine import Engine
from tests.lab.lab import HostState, Lab
from tests.program import stack_config

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
SECONDS = 20
CHANGE_AT = 5
CONNECTIONS = 8
QUERY = "/hello?name=bench"


def lab_config(h: HostState, source: Path) -> dict[str, Any]:
    cfg = stack_config("local")
    cfg.update(host={"address": h.address, "user": "root", "port": 22}, ssh_private_key_file=h.key_path)
    cfg.pop("forward_root", None)
    cfg["apps"] = [{"name": "hello", "source": str(source), "workers": 2, "health_path": "/health"}]
    return cfg


def bump(source: Path, n: int) -> None:
    p = source / "plumber.R"
    p.write_text(p.read_text().split("\n# release ")[0] + f"\n# release {n}\n")


def under_load(url: str, prefix: tuple[str, ...], change: Any) -> tuple[wrk.WrkResult, float]:
    """wrk for SECONDS; `change()` runs at CHANGE_AT s; its duration comes back with wrk's summary."""
    proc = wrk.start(url, SECONDS, CONNECTIONS, prefix=prefix)
    time.sleep(CHANGE_AT)
    t0 = time.monotonic()
    change()
    took = time.monotonic() - t0
    return wrk.finish(proc, SECONDS), took


def page(rows: list[tuple[str, wrk.WrkResult, float]], facts: str) -> str:
    lines = [
        "# make bench-release",
        "",
        f"Produced by: `make bench-release` on {time.strftime('%Y-%m-%d')}. {facts}",
        "",
        f"A new release under load: wrk -t2 -c{CONNECTIONS} -d{SECONDS}s on GET /<app>{QUERY} from the host's own "
        f"network namespace, the change starting at t={CHANGE_AT}s; same host, same app code, same run.",
        "",
        "| setup | requests | failed (non-2xx + socket errors) | failed % | p50 ms | p99 ms | change took s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r, s in rows:
        share = 100 * r.failed / r.requests if r.requests else 0.0
        lines.append(f"| {name} | {r.requests} | {r.failed} ({r.non_2xx} + {r.socket_errors}) | {share:.1f} | "
                     f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {s:.1f} |")
    lines += [
        "",
        "How to read it: the figure that compares is the failed requests. Latencies are not put side by side as a "
        "ratio: while the in-place setup has no process to answer, nginx answers 502 at once, so its percentiles "
        "mix fast refusals with real answers. A socket error is a kept-alive connection closed under wrk (an old "
        "nginx worker process retiring after a reload); wrk does not retry it, clients that retry an idempotent "
        "request on such a connection (RFC 9112 §9.3.1) do not see it.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.release", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "release-results.md")
    args = parser.parse_args(argv)

    lab = Lab()
    started_lab = not lab.is_up()
    if started_lab:
        lab.up(1)
    work = Path(tempfile.mkdtemp(prefix="bench-release-"))
    engine = Engine(work / "state.json")
    h = lab.state.hosts[0]  # type: ignore[union-attr]
    prefix = ("ip", "netns", "exec", h.netns)

    def sh(script: str, stdin: bytes | None = None) -> str:
        return lab.ssh(h.name, script, stdin=stdin, check=True, timeout=300).stdout.decode()

    try:
        source = work / "hello"
        shutil.copytree(ROOT / "examples" / "hello", source)
        cfg = lab_config(h, source)
        engine.deploy(cfg, stack="local")
        sh(PD_UP, stdin=(source / "plumber.R").read_bytes())
        ours_url = f"http://127.0.0.1/hello{QUERY}"
        pd_url = f"http://127.0.0.1:{PD_NGINX_PORT}/{PD_PATH}{QUERY}"
        for url in (ours_url, pd_url):
            warm = wrk.run(url, 3, CONNECTIONS, prefix=prefix)
            if warm.failed:
                raise RuntimeError(f"{url}: {warm.failed} failed requests before any change")

        rows = []
        bump(source, 1)

        def release() -> None:
            _, result = engine.deploy(cfg, stack="local")
            assert result.ran == ["update hello-probe", "update hello-deploy"], result.ran

        r, took = under_load(ours_url, prefix, release)
        rows.append(("plumber-hosting: rolling release (2 workers)", r, took))
        r, took = under_load(pd_url, prefix, lambda: sh(f"systemctl restart plumber-{PD_PATH}"))
        rows.append(("plumberDeploy: in-place `systemctl restart` of its unit", r, took))
        facts = sh(". /etc/os-release; echo \"Lab host: $PRETTY_NAME (systemd-nspawn), $(nproc) cores.\"").strip()
    finally:
        try:
            sh(PD_DOWN)
        finally:
            if engine.load():
                engine.destroy()
            shutil.rmtree(work, ignore_errors=True)
            if started_lab:
                lab.down()

    text = page(rows, facts)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
