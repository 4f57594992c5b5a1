"""A release's take-out, as the real nginx sees it: the rendered upstream and
location of a two-worker app, served by nginx on loopback, with two small HTTP
servers on loopback standing in for the workers.

A release refuses nginx's connections to the worker it restarts (deploy-app.sh's
take_out) and lifts the refusal once the new worker answers (put_back), then
does the same for the next worker. Here "refused" is a closed port, which nginx
sees the same way (ECONNREFUSED). The sequence below is the one that cost a
client a 502 in make bench-release's in-flight check: the first worker is back
but busy with a slow request when the second is taken out.
"""

from __future__ import annotations

import copy
import http.client
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.program import run_program, stack_config
from tests.static.rendered import landed
from tests.static.test_nginx_behaviour import _free_port, run_nginx
from tests.static.test_rendered_files import _need as need
from tests.static.test_rendered_files import _nginx_prefix as nginx_prefix

pytestmark = pytest.mark.static

SLOW_S = 1.5  # longer than a second: nginx's clock, and fail_timeout, count whole seconds


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(SLOW_S)
        body = f"{self.server.server_address[1]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Worker:
    """A stand-in worker on a fixed port: up (answers) or down (connections refused)."""

    port: int
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def up(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@dataclass
class Front:
    port: int
    path: str

    def get(self, what: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        conn.request("GET", f"{self.path}/{what}", headers={"Host": "test"})
        resp = conn.getresponse()
        body = resp.read().decode().strip()
        conn.close()
        return resp.status, body


@pytest.fixture
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Front, Worker, Worker]]:
    nginx = need("nginx")
    cfg = copy.deepcopy(stack_config("dev"))
    cfg["apps"] = [{"name": "duo", "source": "examples/hello", "workers": 2}]
    cfg.pop("forward_root", None)
    files = landed(run_program(cfg, stack="dev", secret_keys=("apps",)))
    tmp = tmp_path_factory.mktemp("nginx")
    conf = nginx_prefix(tmp, files, "a")
    upstream = tmp / "root/etc/nginx/plumber-hosting/upstreams/duo.conf"
    text = upstream.read_text()
    ports = [int(p) for p in re.findall(r"server 127\.0\.0\.1:(\d+)", text)]
    assert len(ports) == 2, text
    free = [_free_port(), _free_port()]
    for old, new in zip(ports, free, strict=True):
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    upstream.write_text(text)
    port = _free_port()
    site = tmp / "root/etc/nginx/sites-available/plumber-hosting"
    site.write_text(site.read_text().replace("    listen 80 default_server;\n", f"    listen 127.0.0.1:{port} default_server;\n"))
    # one nginx worker process: the upstream's failure accounting is per process (no zone)
    conf.write_text("daemon off;\nuser root;\n" + re.sub(r"worker_processes [^;]+;", "worker_processes 1;", conf.read_text()))
    a, b = Worker(free[0]), Worker(free[1])
    try:
        with run_nginx(nginx, tmp, conf, port):
            yield Front(port, "/duo"), a, b
    finally:
        a.down()
        b.down()


def test_a_worker_put_back_while_busy_keeps_serving_when_the_other_goes(front: tuple[Front, Worker, Worker]) -> None:
    nginx, a, b = front
    b.up()
    # a is taken out (refused): requests go to b, none fails
    assert {nginx.get("fast")[0] for _ in range(4)} == {200}
    # a is put back after its restart, b is taken out; the first request to a is slow
    a.up()
    b.down()
    time.sleep(2.1)  # the put-back pause the old release script had (fail_timeout + 1 s)
    with ThreadPoolExecutor(1) as ex:
        slow = ex.submit(nginx.get, "slow")
        time.sleep(0.3)  # the slow request is at a now
        during = [nginx.get("fast") for _ in range(5)]
        assert slow.result() == (200, str(a.port))
    assert during == [(200, str(a.port))] * 5, f"while a was busy and b refused: {during}"
