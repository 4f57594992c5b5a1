"""Two lab hosts behind a load balancer: a release rolls across them one at a
time and a client of the load balancer loses no request.

The program runs in existing-host mode over both hosts (``hosts:``, the
multi-host counterpart of ``host:``); the lab cannot run DigitalOcean's load
balancer, so a local nginx on this machine stands in for it: round robin over
both hosts' port 80, no retries (``proxy_next_upstream off``), so any request a
host fails during its deploy reaches the client.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra

from tests.e2e.conftest import Deployer, get_json, status
from tests.e2e.load import SteadyLoad
from tests.lab.lab import Lab

pytestmark = pytest.mark.lab_hosts(2)

ROOT = Path(__file__).resolve().parents[2]
APP = "roll"


def version(src: Path, label: str) -> None:
    """Make the app report `label` from GET /version."""
    text = (src / "plumber.R").read_text().split("\n#* Release label", 1)[0]
    text += f'\n#* Release label\n#* @get /version\n#* @serializer unboxedJSON\nfunction() list(version = "{label}")\n'
    (src / "plumber.R").write_text(text)


@pytest.fixture(scope="module")
def addresses(lab: Lab) -> list[str]:
    hosts = lab.state.hosts  # type: ignore[union-attr]
    assert len(hosts) >= 2, "this module needs two lab hosts"
    return [h.address for h in hosts[:2]]


@pytest.fixture(scope="module")
def hosts(lab: Lab, addresses: list[str]) -> list[Any]:
    key = lab.state.hosts[0].key_path  # type: ignore[union-attr]
    return [testinfra.get_host(f"paramiko://root@{a}", ssh_identity_file=key) for a in addresses]


@pytest.fixture(scope="module")
def app_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("scale-apps") / APP
    shutil.copytree(ROOT / "examples" / "hello", src)
    version(src, "v1")
    return src


@pytest.fixture(scope="module")
def config(deployer: Deployer, app_src: Path) -> dict[str, Any]:
    cfg = deployer.base_hosts(2)
    cfg.pop("forward_root", None)
    cfg["apps"] = [{"name": APP, "source": str(app_src), "workers": 2, "health_path": "/health"}]
    return cfg


class StandInLoadBalancer:
    """nginx on this machine (root namespace, its own prefix), started and stopped by PID."""

    def __init__(self, prefix: Path, backends: list[str]) -> None:
        self.prefix = prefix
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        servers = "\n".join(f"        server {b}:80 max_fails=0;" for b in backends)
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(
            f"""daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 1024; }}
http {{
    log_format lb '$status $upstream_addr $upstream_status $msec $request_time';
    access_log {prefix}/logs/access.log lb;
    upstream fleet {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://fleet;
            proxy_next_upstream off;
            proxy_connect_timeout 5s;
            proxy_read_timeout 30s;
        }}
    }}
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> StandInLoadBalancer:
        nginx = shutil.which("nginx")
        assert nginx, "nginx is not installed (make deps)"
        self.proc = subprocess.Popen([nginx, "-p", str(self.prefix), "-c", str(self.conf)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            assert self.proc.poll() is None, (self.prefix / "logs/error.log").read_text()
            time.sleep(0.1)
        raise AssertionError("the stand-in load balancer did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to the master we started: it stops its workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def lines(self) -> list[str]:
        """Its access log: status, upstream address, upstream status, time, request time."""
        return (self.prefix / "logs/access.log").read_text().splitlines()

    def log(self) -> list[tuple[str, str]]:
        """(status, upstream address) of every request it proxied."""
        return [(p[0], p[1]) for p in (line.split() for line in self.lines()) if len(p) >= 2]


@pytest.fixture(scope="module")
def lb(addresses: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInLoadBalancer]:
    with StandInLoadBalancer(tmp_path_factory.mktemp("lb"), addresses) as balancer:
        yield balancer


def ver(address: str, port: int = 80) -> str:
    return str(get_json(f"http://{address}:{port}/{APP}/version")["version"])


def healthz(address: str) -> tuple[int, str]:
    res = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", f"http://{address}/healthz"],
        capture_output=True, text=True,
    )
    body, _, code = res.stdout.rpartition("\n")
    return int(code or 0), body.strip()


def wait_healthz(address: str, want: int, timeout: float = 20) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if healthz(address)[0] == want:
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"/healthz on {address} did not answer {want} within {timeout}s: {healthz(address)}")


def test_both_hosts_serve_and_report_health(deployer: Deployer, config: dict[str, Any], addresses: list[str]) -> None:
    result = deployer.up(config)
    created = set(result.ops("create"))
    for suffix in ("", "@2"):
        assert {f"provision{suffix}-server", f"site{suffix}-nginx", f"{APP}{suffix}-deploy",
                f"rotation{suffix}-join"} <= created
    for a in addresses:
        assert ver(a) == "v1"
        assert healthz(a) == (200, "ok: 1 app(s) answer")


def test_healthz_fails_while_an_app_does_not_answer(config: dict[str, Any], addresses: list[str], hosts: list[Any]) -> None:
    h = hosts[1]
    workers = h.check_output(f"systemctl list-units --plain --no-legend --state=active 'plumber-{APP}@*' | awk '{{print $1}}'").split()
    assert len(workers) == 2
    h.run(f"systemctl stop {' '.join(workers)}")
    try:
        took = wait_healthz(addresses[1], 503)
        print(f"/healthz went 503 {took:.1f}s after the app stopped answering")
        assert healthz(addresses[0])[0] == 200  # the other host is unaffected
    finally:
        h.run(f"systemctl start {' '.join(workers)}")
    wait_healthz(addresses[1], 200, timeout=60)
    # out of service (the flag a replica's removal takes away) fails it too
    h.run("mv /etc/plumber-hosting/in-service /etc/plumber-hosting/in-service.test")
    try:
        wait_healthz(addresses[1], 503)
    finally:
        h.run("mv /etc/plumber-hosting/in-service.test /etc/plumber-hosting/in-service")
    wait_healthz(addresses[1], 200)


def test_rolling_update_under_load_loses_no_request(
    deployer: Deployer, config: dict[str, Any], app_src: Path, addresses: list[str], hosts: list[Any],
    lb: StandInLoadBalancer,
) -> None:
    assert ver("127.0.0.1", lb.port) == "v1"
    version(app_src, "v2")
    with SteadyLoad("127.0.0.1", f"/{APP}/version", rate=25, max_seconds=240, port=lb.port) as load:
        time.sleep(2)
        result = deployer.up(config)
        time.sleep(2)
    print(f"rolling update over 2 hosts: {load.result.total} requests through the load balancer, "
          f"statuses {dict(load.result.statuses)}, lost {load.result.failed}; "
          f"steps {[(s.op, s.name, round(s.seconds, 1)) for s in result.steps]}")
    # only the app changed: its upload and deploy on each host, nothing else
    assert sorted(result.ran) == sorted(f"update {APP}{s}-{c}" for s in ("", "@2") for c in ("upload", "deploy"))
    assert load.result.total > 100
    failed = [line for line in lb.lines() if not line.startswith("200 ")]
    deploys = [(s.name, round(s.started, 1), round(s.started + s.seconds, 1)) for s in result.steps]
    host_errors = [h.run("tail -n 15 /var/log/nginx/error.log").stdout for h in hosts]
    assert load.result.failed == 0, (dict(load.result.statuses), failed[:20], deploys,
                                     (lb.prefix / "logs/error.log").read_text()[-3000:], host_errors)
    # every request went through the load balancer to one of the two hosts, both used
    log = lb.log()
    upstreams = Counter(addr for _, addr in log)
    assert {f"{a}:80" for a in addresses} <= set(upstreams), upstreams
    assert set(s for s, _ in log) == {"200"}, Counter(s for s, _ in log)
    # the new release is served by both hosts
    assert [ver(a) for a in addresses] == ["v2", "v2"]
    seen = {json.loads(b)["version"] for b in load.result.bodies if b.startswith("{")}
    assert seen == {"v1", "v2"}
    # one host at a time: host 2's deploy started after host 1's had finished
    steps = {s.name: s for s in result.steps}
    first, second = steps[f"{APP}-deploy"], steps[f"{APP}@2-deploy"]
    assert second.started >= first.started + first.seconds, (first, second)
    # ... as the hosts saw it: host 1 recorded the release before host 2 started a worker on it
    released_1 = float(hosts[0].check_output(f"stat -c %.3Y /etc/plumber-hosting/apps/{APP}/release"))
    started_2 = min(
        int(hosts[1].check_output(f"systemctl show -p ExecMainStartTimestampMonotonic --value {u}")) / 1e6
        for u in hosts[1].check_output(
            f"systemctl list-units --plain --no-legend --state=active 'plumber-{APP}@*' | awk '{{print $1}}'"
        ).split()
    )
    now_2, uptime_2 = map(float, hosts[1].check_output("echo $(date +%s.%N) $(cut -d' ' -f1 /proc/uptime)").split())
    started_2_wall = now_2 - uptime_2 + started_2
    print(f"host 1 finished its release at {released_1:.1f}; host 2 started its first new worker at {started_2_wall:.1f}")
    assert started_2_wall > released_1


def test_removing_a_host_touches_no_other(deployer: Deployer, config: dict[str, Any], addresses: list[str], hosts: list[Any]) -> None:
    one = {**config, "hosts": config["hosts"][:1]}
    result = deployer.up(one)
    assert result.ops("update") == [] and result.ops("create") == []
    deleted = result.ops("delete")
    print("\n".join(f"--- {s.op} {s.name}\n{s.stderr}" for s in result.steps))
    assert set(deleted) == {"rotation@2-join", f"{APP}@2-deploy", f"{APP}@2-upload", "site@2-nginx", "provision@2-server"}
    # out of service first, then the app, then the site
    assert deleted.index("rotation@2-join") < deleted.index(f"{APP}@2-deploy") < deleted.index("site@2-nginx")
    assert ver(addresses[0]) == "v2"
    gone = hosts[1].run(f"systemctl list-units --state=active --plain --no-legend 'plumber-{APP}@*'; "
                        f"ls /etc/systemd/system/plumber-{APP}@.service /srv/plumber/{APP} 2>/dev/null")
    assert gone.stdout.strip() == "", gone.stdout
    assert status(f"http://{addresses[1]}/healthz") != 200  # out of service: no load balancer would pick it
    # and back: only the second host's resources are created
    result = deployer.up(config)
    assert result.ops("update") == [] and all("@2" in n for n in result.ops("create"))
    assert [ver(a) for a in addresses] == ["v2", "v2"]
    assert status(f"http://{addresses[1]}/healthz") == 200


def test_destroy_leaves_both_hosts_clean(deployer: Deployer, hosts: list[Any]) -> None:
    deployer.destroy()
    for h in hosts:
        assert not h.file(f"/srv/plumber/{APP}").exists  # (other modules' leftovers are theirs)
        assert not h.file("/etc/plumber-hosting/in-service").exists
        assert h.check_output("ls /etc/plumber-hosting/health | wc -l") == "0"
