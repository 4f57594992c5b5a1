"""Run wrk (bounded in time) and read its summary."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass


@dataclass
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def parse(out: str) -> WrkResult:
    if not re.search(r"\d+ requests in", out) or "Latency Distribution" not in out:
        raise RuntimeError(f"wrk gave no summary:\n{out[-2000:]}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        requests=requests,
        rps=rps,
        p50_ms=p50,
        p99_ms=p99,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
    )


def start(
    url: str,
    seconds: int,
    connections: int = 8,
    threads: int = 2,
    extra: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
) -> subprocess.Popen[str]:
    """wrk in the background; `prefix` runs it elsewhere, e.g. ("ip", "netns", "exec", NS)."""
    return subprocess.Popen(
        [*prefix, "wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", *extra, url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def finish(proc: subprocess.Popen[str], seconds: int) -> WrkResult:
    out, _ = proc.communicate(timeout=seconds + 30)
    return parse(out)


def run(
    url: str, seconds: int, connections: int = 8, threads: int = 2, prefix: tuple[str, ...] = ()
) -> WrkResult:
    return finish(start(url, seconds, connections, threads, prefix=prefix), seconds)
