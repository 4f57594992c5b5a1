"""A user's view of `pulumi up --stack local` on a droplet-like host.

The scenarios run in order against one host, each building on the state the
previous one left, as a user's successive `pulumi up`s would.
"""

from __future__ import annotations

import copy
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Deployer, assert_previews_only_app, curl, get_json, status
from tests.lab.lab import Lab

ROOT = Path(__file__).resolve().parents[2]
GREETER = {"name": "greeter", "source": "tests/e2e/apps/greeter", "workers": 3, "packages": ["phgreet"], "health_path": "/health"}


@pytest.fixture(scope="module")
def hello_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/hello the tests may edit."""
    dst = tmp_path_factory.mktemp("apps") / "hello"
    shutil.copytree(ROOT / "examples" / "hello", dst)
    return dst


@pytest.fixture(scope="module")
def config(deployer: Deployer, hello_copy: Path) -> dict[str, Any]:
    cfg = deployer.base()
    cfg["apps"][0]["source"] = str(hello_copy)
    cfg["apps"].append(copy.deepcopy(GREETER))
    return cfg


def units(host: Any, app: str) -> list[str]:
    out = host.check_output(f"systemctl list-units --plain --no-legend --state=active 'plumber-{app}@*' | awk '{{print $1}}'")
    return sorted(out.split())


def test_fresh_host_serves_every_app(deployer: Deployer, config: dict[str, Any], address: str, host: Any) -> None:
    plan = deployer.preview(config)
    result = deployer.up(config)
    assert sorted(result.ops("create")) == sorted(
        ["provision-server", "site-nginx", "hello-upload", "hello-deploy", "hashing-upload", "hashing-deploy",
         "greeter-upload", "greeter-deploy", "rotation-join"]
    )
    previewed = {**plan.changes(), **plan.changes("command:remote:CopyToRemote")}
    assert previewed == {name: "create" for name in result.ops("create")}  # the preview said so
    base = f"http://{address}"
    # each app answers through nginx with its prefix stripped
    assert get_json(f"{base}/hello/hello?name=lab") == {"message": "Hello, lab!"}
    who = get_json(f"{base}/hello/whoami")
    assert who["path"] == "/whoami" and who["forwarded_prefix"] == "/hello" and who["forwarded_proto"] == "http"
    assert get_json(f"{base}/hash/sha256?text=abc")["sha256"].startswith("ba7816bf")
    assert get_json(f"{base}/hello/pid")["greeting"] == "hello from the lab"  # env reaches the app
    # / redirects to forward_root; /hello redirects to /hello/
    res = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"{base}/")
    assert res.stdout == f"302 {base}/hello/"
    assert status(f"{base}/hello") == 301
    # docs only where docs: true
    assert status(f"{base}/hello/__docs__/") == 200
    assert status(f"{base}/hash/__docs__/") == 404
    assert status(f"{base}/nope/") == 404
    # workers: active, enabled at boot, run as plumber, listen on loopback only
    assert len(units(host, "hello")) == 2 and len(units(host, "greeter")) == 3 and len(units(host, "hashing")) == 1
    for app in ("hello", "hashing", "greeter"):
        for unit in units(host, app):
            svc = host.service(unit)
            assert svc.is_running and svc.is_enabled
            assert host.check_output(f"systemctl show -p User --value {unit}") == "plumber"
            pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
            assert host.check_output(f"ps -o user= -p {pid}").strip() == "plumber"
    listeners = host.check_output("ss -Htlnp | grep -E 'R|Rscript' || true")
    assert listeners and all(" 127.0.0.1:" in line for line in listeners.splitlines()), listeners
    # what landed, with the right owners and modes
    assert host.file("/srv/plumber/hello/current").is_symlink
    assert host.file("/srv/plumber/hello/current/plumber.R").user == "root"
    env = host.file("/etc/plumber-hosting/env/hello.env")
    assert env.mode == 0o600 and env.user == "root"
    assert host.file("/etc/nginx/plumber-hosting/locations/hashing.conf").exists
    assert "server_tokens off" in host.file("/etc/nginx/sites-available/plumber-hosting").content_string
    headers = curl("-s", "-D", "-", "-o", "/dev/null", f"{base}/hello/health").stdout
    assert re.search(r"^Server: nginx\s*$", headers, re.M), headers  # no version (server_tokens off)


def test_same_config_again_runs_nothing(deployer: Deployer, config: dict[str, Any]) -> None:
    assert deployer.preview(config).changes(None) == {}
    assert deployer.up(config).steps == []


def test_changing_one_app_runs_only_that_app(deployer: Deployer, config: dict[str, Any], hello_copy: Path, address: str) -> None:
    before = get_json(f"http://{address}/hash/version")
    plumber = hello_copy / "plumber.R"
    plumber.write_text(plumber.read_text().replace('paste0("Hello, "', 'paste0("Hi there, "'))
    assert_previews_only_app(deployer.preview(config), "hello")
    result = deployer.up(config)
    assert result.ran == ["update hello-upload", "update hello-deploy"]
    assert get_json(f"http://{address}/hello/hello?name=lab") == {"message": "Hi there, lab!"}
    assert get_json(f"http://{address}/hash/version") == before


def test_secret_env_change_restarts_only_that_app(deployer: Deployer, config: dict[str, Any], host: Any) -> None:
    secret = "tok-9f8e7d6c5b4a"
    cfg = copy.deepcopy(config)
    hashing = next(a for a in cfg["apps"] if a["name"] == "hashing")
    hashing["secret_env"] = {"API_TOKEN": secret}
    before = host.check_output("systemctl show -p MainPID --value plumber-hello@$(ls /etc/systemd/system/multi-user.target.wants | grep -o 'plumber-hello@[0-9]*' | head -1 | cut -d@ -f2).service")
    result = deployer.up(cfg)
    assert result.ran == ["update hashing-deploy"]
    assert all(secret not in s.stdout + s.stderr for s in result.steps), "secret in command output"
    assert all(secret not in deployer.last.named(c).inputs["create"] for c in ("hashing-deploy",))  # type: ignore[union-attr]
    env = host.file("/etc/plumber-hosting/env/hashing.env")
    assert env.mode == 0o600 and f'API_TOKEN="{secret}"' in host.check_output("cat /etc/plumber-hosting/env/hashing.env")
    assert secret not in host.check_output("journalctl -u 'plumber-hashing@*' --no-pager -o cat | tail -50")
    after = host.check_output("systemctl show -p MainPID --value plumber-hello@$(ls /etc/systemd/system/multi-user.target.wants | grep -o 'plumber-hello@[0-9]*' | head -1 | cut -d@ -f2).service")
    assert before == after  # hello was not restarted
    config.clear()
    config.update(cfg)


def test_add_and_remove_apps(deployer: Deployer, config: dict[str, Any], address: str, host: Any) -> None:
    cfg = copy.deepcopy(config)
    cfg["apps"] = [a for a in cfg["apps"] if a["name"] != "hashing"]
    cfg["apps"].append({"name": "extra", "source": "examples/hello", "path": "/v2/extra", "health_path": "/health"})
    result = deployer.up(cfg)
    assert sorted(result.ran) == ["create extra-deploy", "create extra-upload", "delete hashing-deploy", "delete hashing-upload"]
    assert status(f"http://{address}/hash/sha256?text=a") == 404
    assert get_json(f"http://{address}/v2/extra/hello?name=x") == {"message": "Hello, x!"}
    assert get_json(f"http://{address}/hello/hello?name=y") == {"message": "Hi there, y!"}
    assert units(host, "hashing") == []
    for gone in (
        "/etc/systemd/system/plumber-hashing@.service",
        "/etc/nginx/plumber-hosting/locations/hashing.conf",
        "/etc/nginx/plumber-hosting/upstreams/hashing.conf",
        "/etc/plumber-hosting/env/hashing.env",
        "/srv/plumber/hashing",
    ):
        assert not host.file(gone).exists, gone
    assert host.check_output("ls /etc/systemd/system/multi-user.target.wants/ | grep -c plumber-hashing || true") == "0"
    config.clear()
    config.update(cfg)


def test_packages_come_from_the_local_repository(address: str, host: Any) -> None:
    got = get_json(f"http://{address}/greeter/greet?name=lab")
    assert got["message"] == "Greetings, lab, from phgreet 0.1.0"
    assert host.file("/srv/plumber/greeter/library/phgreet/DESCRIPTION").exists


def test_requests_spread_over_workers_and_killed_worker_restarts(address: str, host: Any) -> None:
    seen: dict[int, int] = {}
    for _ in range(30):
        got = get_json(f"http://{address}/greeter/pid")
        seen[got["port"]] = got["pid"]
    assert len(seen) == 3, seen
    port, pid = sorted(seen.items())[0]
    host.run(f"kill -9 {pid}")
    deadline = time.monotonic() + 10
    new_pid = None
    while time.monotonic() < deadline:
        main = host.check_output(f"systemctl show -p MainPID --value plumber-greeter@{port}.service")
        ready = host.run(f"curl -sf http://127.0.0.1:{port}/health").rc == 0
        if main not in ("0", str(pid)) and ready:
            new_pid = int(main)
            break
        time.sleep(0.25)
    assert new_pid and new_pid != pid, "systemd did not restart the killed worker"
    restarted = time.monotonic() - (deadline - 10)
    assert restarted < 5, f"worker back after {restarted:.1f}s"


def test_resize_workers(deployer: Deployer, config: dict[str, Any], address: str, host: Any) -> None:
    cfg = copy.deepcopy(config)
    next(a for a in cfg["apps"] if a["name"] == "greeter")["workers"] = 1
    next(a for a in cfg["apps"] if a["name"] == "extra")["workers"] = 2
    result = deployer.up(cfg)
    assert sorted(result.ran) == ["update extra-deploy", "update greeter-deploy"]  # same code: nothing copied
    assert len(units(host, "greeter")) == 1 and len(units(host, "extra")) == 2
    # one worker, and its spare as nginx's backup server (started only during a release)
    upstream = host.file("/etc/nginx/plumber-hosting/upstreams/greeter.conf").content_string
    servers = [line for line in upstream.splitlines() if line.strip().startswith("server 127")]
    assert len([x for x in servers if "backup" not in x]) == 1 and len(servers) == 2, upstream
    ports = {get_json(f"http://{address}/v2/extra/pid")["port"] for _ in range(12)}
    assert len(ports) == 2
    assert get_json(f"http://{address}/greeter/greet?name=one")["message"].startswith("Greetings, one")
    config.clear()
    config.update(cfg)


def test_firewall_allows_only_ssh_http_https(address: str, host: Any, lab: Lab, host_name: str) -> None:
    assert "Status: active" in host.check_output("ufw status")
    # a listener on another port, on all addresses, is unreachable from outside
    host.run("systemd-run --unit=ph-probe --collect python3 -m http.server 8081 --bind 0.0.0.0")
    try:
        deadline = time.monotonic() + 10
        while host.run("curl -s -o /dev/null http://127.0.0.1:8081/").rc != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert host.run("curl -s -o /dev/null http://127.0.0.1:8081/").rc == 0, "probe listener did not start"
        open_ports = []
        for port in (22, 80, 443, 8081, 10000):
            with socket.socket() as s:
                s.settimeout(2)
                if s.connect_ex((address, port)) == 0:
                    open_ports.append(port)
        assert open_ports == [22, 80], open_ports  # 443 has no listener until https is on
    finally:
        host.run("systemctl stop ph-probe")


def test_changing_admin_cidrs_reprovisions(deployer: Deployer, config: dict[str, Any], host: Any) -> None:
    cfg = copy.deepcopy(config)
    cfg["admin_cidrs"] = ["10.213.8.0/24", "192.0.2.0/24"]
    result = deployer.up(cfg)
    assert result.ran == ["update provision-server"]
    rules = host.check_output("ufw show added")
    assert "ufw allow from 192.0.2.0/24 to any port 22 proto tcp" in rules
    assert "10.213.0.0/16" not in rules
    config.clear()
    config.update(cfg)


def test_https_with_local_acme(deployer: Deployer, config: dict[str, Any], lab: Lab, address: str, host: Any, tmp_path: Path) -> None:
    pebble = lab.state.pebble  # type: ignore[union-attr]
    name = "api.lab.test"
    lab.dns_add_a(name, address)
    cfg = copy.deepcopy(config)
    cfg.update(
        domain="lab.test",
        hostname="api",
        manage_dns=False,
        https={"email": "ops@lab.test", "accept_tos": True, "acme_server": pebble.directory_url, "acme_ca_cert": pebble.api_ca_cert_pem},
    )
    result = deployer.up(cfg)
    assert result.ran == ["update site-nginx"]
    root = tmp_path / "pebble-root.pem"
    root.write_text(lab.pebble_root_pem())
    resolve = f"{name}:443:{address}"
    # the chain verifies against pebble's root; HSTS is set
    head = curl("-D", "-", "-o", "/dev/null", "--cacert", str(root), "--resolve", resolve, f"https://{name}/hello/health")
    assert head.returncode == 0, head.stderr
    assert " 200" in head.stdout.splitlines()[0], head.stdout
    assert "strict-transport-security: max-age=63072000" in head.stdout.lower()
    # HTTP redirects to HTTPS
    res = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", f"Host: {name}", f"http://{address}/hello/health")
    assert res.stdout == f"301 https://{name}/hello/health"
    assert get_json(f"https://{name}/greeter/greet?name=tls", "--cacert", str(root), "--resolve", resolve)["message"].startswith("Greetings, tls")
    # renewal: scheduled, and a dry run succeeds (with the same private CA)
    assert host.service("certbot.timer").is_enabled
    assert host.file("/etc/letsencrypt/renewal-hooks/deploy/plumber-hosting-reload-nginx").mode == 0o755
    # (--dry-run swaps the stored ACME server for Let's Encrypt staging unless told otherwise)
    assert f"server = {pebble.directory_url}" in host.check_output("cat /etc/letsencrypt/renewal/plumber-hosting.conf")
    dry = host.run(
        f"REQUESTS_CA_BUNDLE=/etc/plumber-hosting/acme-ca.pem certbot renew --dry-run --no-random-sleep-on-renew --server {pebble.directory_url}"
    )
    assert dry.rc == 0, dry.stderr
    assert "succeeded" in (dry.stdout + dry.stderr)
    # applying again runs nothing (certbot is not asked again)
    assert deployer.up(cfg).steps == []
    config.clear()
    config.update(cfg)


def test_reboot_serves_again_without_running_anything(deployer: Deployer, config: dict[str, Any], lab: Lab, host_name: str, address: str) -> None:
    lab.reboot(host_name)
    root = Path(lab.dir) / "pebble-root.pem"
    root.write_text(lab.pebble_root_pem())
    resolve = f"api.lab.test:443:{address}"
    paths = ("/hello/health", "/greeter/health", "/v2/extra/health")
    deadline = time.monotonic() + 60
    serving: set[str] = set()
    while time.monotonic() < deadline and len(serving) < len(paths):
        for path in paths:
            if curl("-f", "-o", "/dev/null", "--cacert", str(root), "--resolve", resolve, f"https://api.lab.test{path}").returncode == 0:
                serving.add(path)
        time.sleep(0.5)
    assert serving == set(paths), f"after reboot only {sorted(serving)} serve"
    for path in paths:
        assert get_json(f"https://api.lab.test{path}", "--cacert", str(root), "--resolve", resolve)["status"] == "ok"
    assert deployer.up(config).steps == []


def test_destroy_removes_everything_it_deployed(deployer: Deployer, address: str, host: Any) -> None:
    result = deployer.destroy()
    assert sorted(result.ops("delete")) == [
        "extra-deploy", "extra-upload", "greeter-deploy", "greeter-upload", "hello-deploy", "hello-upload",
        "provision-server", "rotation-join", "site-nginx",
    ]
    assert host.check_output("systemctl list-units --all --plain --no-legend 'plumber-*@*' | wc -l") == "0"
    assert not host.file("/etc/nginx/sites-enabled/plumber-hosting").exists
    nginx = host.run("systemctl status --no-pager -n 40 nginx; ps -eo pid,ppid,lstart,args | grep '[n]ginx'; "
                     "cat /run/nginx.pid; tail -n 20 /var/log/nginx/error.log")
    assert host.service("nginx").is_running, nginx.stdout + nginx.stderr
    assert status(f"http://{address}/hello/health") != 200
