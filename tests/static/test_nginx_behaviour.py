"""The rendered nginx configuration, served by the real nginx on loopback, asked
as a client would: forward_root, security headers, and the order of the access
checks (address 403, key 401, rate 429) before a request could reach R.

No R worker runs: a request nginx lets through ends in 502 (nothing listens on
the app's ports), which is how these tests tell "passed every check" apart from
a refusal. nginx listens on a free 127.0.0.1 port and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.program import run_program, stack_config
from tests.static.rendered import landed
from tests.static.test_rendered_files import _need as need
from tests.static.test_rendered_files import _nginx_prefix as nginx_prefix

pytestmark = pytest.mark.static

KEY = "k-0123456789abcdef0123456789"


@dataclass
class Served:
    port: int

    def get(self, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path, headers={"Host": "test", **(headers or {})})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    nginx = need("nginx")
    cfg = copy.deepcopy(stack_config("dev"))  # plain HTTP; forward_root: hello
    cfg["apps"] += [
        # address not allowed (the client is 127.0.0.1): 403 whatever the key
        {"name": "walled", "source": "examples/hello", "allow_cidrs": ["10.0.0.0/8"], "auth": {"api_keys": [KEY]},
         "rate_limit": {"rate": "1r/m", "burst": 1}},
        # address allowed: then the key (401), then the rate (429)
        {"name": "keyed", "source": "examples/hello", "allow_cidrs": ["127.0.0.0/8"], "auth": {"api_keys": [KEY]},
         "rate_limit": {"rate": "1r/m", "burst": 2}},
    ]
    files = landed(run_program(cfg, stack="dev", secret_keys=("apps",)))
    tmp = tmp_path_factory.mktemp("nginx")
    conf = nginx_prefix(tmp, files, "a")
    port = _free_port()
    site = tmp / "root/etc/nginx/sites-available/plumber-hosting"
    text = site.read_text()
    assert "    listen 80 default_server;\n" in text
    site.write_text(text.replace("    listen 80 default_server;\n", f"    listen 127.0.0.1:{port} default_server;\n"))
    conf.write_text("daemon off;\nuser root;\n" + conf.read_text())
    with run_nginx(nginx, tmp, conf, port):
        yield Served(port)


@contextlib.contextmanager
def run_nginx(nginx: str, prefix: Path, conf: Path, port: int) -> Iterator[None]:
    """nginx in the foreground with `conf`, until it answers on `port`; stopped by its PID."""
    proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    log = prefix / "error.log"
                    pytest.fail(f"nginx did not start: {out}{log.read_text() if log.exists() else ''}")
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_no_hsts_without_https(served: Served) -> None:
    for path in ("/", "/healthz", "/hello/", "/nowhere"):
        resp = served.get(path)
        assert resp.getheader("X-Content-Type-Options") == "nosniff", path
        assert resp.getheader("Strict-Transport-Security") is None, (path, resp.getheaders())


def test_forward_root(served: Served) -> None:
    resp = served.get("/")
    assert resp.status == 302
    location = resp.getheader("Location") or ""
    assert location.endswith("/hello/") and location.split("://", 1)[-1].split("/", 1)[1] == "hello/", location
    # the target is the app, not another redirect
    assert served.get("/hello/").status == 502  # through to the (absent) workers


def test_order_403_401_429(served: Served) -> None:
    # 1. address: refused before the key is looked at
    assert [served.get("/walled/").status for _ in range(3)] == [403] * 3
    assert [served.get("/walled/", {"X-Api-Key": KEY}).status for _ in range(3)] == [403] * 3
    # 2. key: refused before the rate is counted (never 429 without a valid key)
    assert [served.get("/keyed/").status for _ in range(6)] == [401] * 6
    assert served.get("/keyed/", {"X-Api-Key": "wrong"}).status == 401
    # 3. rate: 1 + burst (2) requests get through, the rest are refused with 429
    statuses = [served.get("/keyed/", {"X-Api-Key": KEY}).status for _ in range(6)]
    assert statuses == [502, 502, 502, 429, 429, 429], statuses
    assert served.get("/keyed/", {"Authorization": f"Key {KEY}"}).status == 429
