"""The clients of make bench-release, each a bounded subprocess that writes one
line per request ("<end, epoch s> <latency ms> <outcome>", outcome an HTTP
status or `error:<kind>`):

  * wrk: keep-alive GET, no retries (a Lua script times each request);
  * get-retry: Python's urllib3 GET on a kept-alive connection with urllib3's
    default retries (an idempotent request whose connection was closed before
    any response is sent again, as HTTP clients do, RFC 9112 section 9.3.1);
  * post: urllib3 POST on a kept-alive connection, same defaults: urllib3 never
    resends a POST once it was sent (Retry.DEFAULT_ALLOWED_METHODS has no POST),
    only when the connection could not be opened.

Run as `python -m bench.clients KIND URL SECONDS INTERVAL_MS OUT` (python
clients); `wrk_command` builds the wrk one. Every client stops after SECONDS
and after MAX_REQUESTS requests, whichever first.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import urllib3

MAX_REQUESTS = 20000
BODY = b'{"text": "' + b"x" * 200 + b'"}'

WRK_SCRIPT = """-- bench/clients.py: time every request of a wrk thread (one connection per thread)
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } ph_timespec;
int clock_gettime(int clk, ph_timespec *tp);
]]
local ts = ffi.new("ph_timespec")
local function now() ffi.C.clock_gettime(0, ts); return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9 end
local counter = 0
function setup(thread) counter = counter + 1; thread:set("id", counter) end
local out, started
function init(args) out = io.open(args[1] .. "." .. id, "w") end
function request() started = now(); return wrk.format() end
function response(status, headers, body)
  local t = now()
  out:write(string.format("%.6f %.3f %d\\n", t, (t - started) * 1000, status))
end
function delay() return tonumber(os.getenv("PH_DELAY_MS")) end
"""


def wrk_command(url: str, seconds: int, connections: int, script: Path, out: Path) -> list[str]:
    """wrk with one connection per thread, so the script can time each request."""
    return ["wrk", f"-t{connections}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
            "-s", str(script), url, str(out)]


def run(kind: str, url: str, seconds: float, interval_ms: float, out: Path) -> None:
    pool = urllib3.PoolManager(maxsize=1, timeout=urllib3.Timeout(connect=5, read=10))
    method, body, headers = ("POST", BODY, {"Content-Type": "application/json"}) if kind == "post" else ("GET", None, {})
    lines: list[str] = []
    start = time.monotonic()
    due = start
    while len(lines) < MAX_REQUESTS and time.monotonic() - start < seconds:
        t0 = time.perf_counter()
        try:
            r = pool.request(method, url, body=body, headers=headers)
            outcome = str(r.status)
        except urllib3.exceptions.HTTPError as e:
            reason = getattr(e, "reason", None)
            outcome = f"error:{type(reason or e).__name__}"
        lines.append(f"{time.time():.6f} {(time.perf_counter() - t0) * 1000:.3f} {outcome}")
        due += interval_ms / 1000
        time.sleep(max(0.0, due - time.monotonic()))
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    kind, url, seconds, interval, out = sys.argv[1:6]
    if kind not in ("get-retry", "post"):
        sys.exit(f"unknown client {kind!r}")
    run(kind, url, float(seconds), float(interval), Path(out))
