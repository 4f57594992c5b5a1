"""GitOps access: the `up` workflow's deploy VPN on a lab host (issue 17, point 1).

A stand-in CI runner whose address is outside the stack's ``admin_cidrs`` (as a
GitHub-hosted runner's is outside prod's) sits next to the lab host, together
with a stand-in VPN gateway whose address is inside them
(tests/lab/runner_net.py). After the program has provisioned the host (ufw
admits SSH from admin_cidrs only):

* before: from the runner, the host's SSH port does not answer, its HTTP does;
* ``.github/scripts/deploy-vpn.sh up``, as up.yml runs it with the
  environment's WG_CONFIG secret: the runner's configuration docs/gitops.md
  recommends (read from it), a split tunnel with the server's address as its
  AllowedIPs. Only that address is routed into the tunnel: a connection the
  runner had open to another address (a stand-in for its own to GitHub) keeps
  working, from the runner's own address;
* the program's remote commands carried out
  from the runner (a changed app is deployed; the host's sshd logs the logins
  as coming from the gateway's address);
* ``deploy-vpn.sh down``: the tunnel and its process are gone, and the runner's
  SSH is dropped again, while the host's ufw rules are the program's own
  throughout (nothing was opened on the host for CI).

Run as ``python -m tests.e2e.test_gitops_access STATE CONFIG`` it is the
pipeline's `pulumi up` stand-in: the test engine's deploy, from whatever network
namespace it is started in.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Deployer, curl, get_json
from tests.engine import Engine
from tests.lab.lab import Lab
from tests.lab.runner_net import (
    GATEWAY_OFFICE,
    GATEWAY_PUBLIC,
    RUNNER_ADDRESS,
    RUNNER_NS,
    RUNNER_PEER,
    WG_PORT,
    RunnerNetwork,
)

ROOT = Path(__file__).resolve().parents[2]
VPN_SCRIPT = ROOT / ".github" / "scripts" / "deploy-vpn.sh"
DOCS = ROOT / "docs" / "gitops.md"
MARK = "STEPS "

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("wg", "wg-quick", "iptables")),
    reason="needs wireguard-tools and iptables (tests/lab/apt-packages.txt)",
)


def _in(cidrs: list[str], address: str) -> bool:
    return any(ipaddress.ip_address(address) in ipaddress.ip_network(c) for c in cidrs)


@pytest.fixture(scope="module")
def deployed(deployer: Deployer) -> dict[str, Any]:
    """The local stack, provisioned from the build machine (an admin address)."""
    cfg = deployer.base()
    cfg["apps"] = [a for a in cfg["apps"] if a["name"] == "hello"]
    deployer.up(cfg)
    return cfg


@pytest.fixture(scope="module")
def net(lab: Lab, host_name: str, address: str, deployed: dict[str, Any],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerNetwork]:  # fmt: skip
    with RunnerNetwork(lab.host(host_name).netns, address, tmp_path_factory.mktemp("runner")) as network:
        yield network


def _ssh_probe(net: RunnerNetwork, lab: Lab, host_name: str) -> tuple[int, str]:
    res = net.in_runner([*lab.ssh_argv(host_name), "true"], timeout=60)
    return res.returncode, res.stderr.strip()


def _http_probe(net: RunnerNetwork, address: str) -> str:
    res = net.in_runner(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                         f"http://{address}/hello/health"])  # fmt: skip
    return res.stdout.strip() or res.stderr.strip()


def _assert_ssh_closed_http_open(net: RunnerNetwork, lab: Lab, host_name: str, address: str, when: str) -> None:
    """From the runner's address (outside admin_cidrs): SSH dropped by the host's firewall, HTTP served."""
    code, err = _ssh_probe(net, lab, host_name)
    http = _http_probe(net, address)
    print(f"{when}: ssh from runner exit {code} ({err}); http from runner {http}")
    assert code == 255 and "timed out" in err
    assert http == "200"


def docs_runner_config(net: RunnerNetwork, address: str) -> str:
    """The runner's WG_CONFIG exactly as docs/gitops.md writes it, its placeholders filled in for the lab."""
    m = re.search(r"The runner's side is the `WG_CONFIG` secret.*?```ini\n(.*?)```", DOCS.read_text(), re.S)
    assert m, "docs/gitops.md has no runner WG_CONFIG block"
    text = m.group(1)
    for placeholder, value in (("<the runner's private key>", net.runner_key),
                               ("<the gateway's public key>", net.gateway_pub),
                               ("vpn.example.com:51820", f"{GATEWAY_PUBLIC}:{WG_PORT}"),
                               ("<the servers' addresses>", f"{address}/32")):  # fmt: skip
        assert placeholder in text, f"docs/gitops.md's runner block has no {placeholder}"
        text = text.replace(placeholder, value)
    assert "<" not in text, text
    return text


def _settings(conf: str) -> list[tuple[str, str]]:
    return [tuple(x.strip() for x in line.split("=", 1)) for line in conf.splitlines() if "=" in line]  # type: ignore[misc]


KEPT_CONNECTION = r"""
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
def get():
    c.request("GET", "/hello/health")
    r = c.getresponse()
    r.read()
    return f"{r.status} {c.sock.getsockname()[0]}"
print(get(), flush=True)
sys.stdin.readline()
print(get(), flush=True)
"""


def _route(net: RunnerNetwork, to: str) -> str:
    return net.in_runner(["ip", "-o", "route", "get", to]).stdout.strip()


def _ufw_added(lab: Lab, host_name: str) -> list[str]:
    out = lab.ssh(host_name, "ufw show added", check=True).stdout.decode()
    return [line for line in out.splitlines() if line.startswith("ufw ")]


def test_deploy_vpn_lets_the_pipeline_through_and_closes_again(
    net: RunnerNetwork, lab: Lab, host_name: str, address: str, deployed: dict[str, Any], deployer: Deployer,
    tmp_path: Path,
) -> None:  # fmt: skip
    from components.provision import ufw_rules

    cidrs = deployed["admin_cidrs"]
    assert not _in(cidrs, RUNNER_ADDRESS) and _in(cidrs, GATEWAY_OFFICE), cidrs
    rules = _ufw_added(lab, host_name)
    assert rules == ufw_rules(cidrs)
    print(f"admin_cidrs {cidrs}; runner {RUNNER_ADDRESS}; VPN gateway {GATEWAY_OFFICE}; ufw: {rules}")

    # before: the runner's SSH is dropped, its HTTP is not (so the path works; ufw is what stops SSH)
    _assert_ssh_closed_http_open(net, lab, host_name, address, "before")

    # the configuration the docs recommend (a split tunnel), the same as the lab network's own peer config
    wg_config = docs_runner_config(net, address)
    assert _settings(wg_config) == _settings(net.wg_config()), (wg_config, net.wg_config())
    allowed = dict(_settings(wg_config))["AllowedIPs"]
    print(f"WG_CONFIG from docs/gitops.md: AllowedIPs = {allowed}")
    # a connection the runner has open before the tunnel (its own to GitHub, say): to another address
    kept = subprocess.Popen(["ip", "netns", "exec", RUNNER_NS, sys.executable, "-c", KEPT_CONNECTION, RUNNER_PEER],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert kept.stdout is not None and kept.stdin is not None
        first = kept.stdout.readline().strip()
        env = {"RUNNER_TEMP": str(tmp_path), "WG_CONFIG": wg_config}
        vpn = net.in_runner(["bash", str(VPN_SCRIPT), "up"], env=env, timeout=60)
        kept.stdin.write("\n")
        kept.stdin.flush()
        second = kept.stdout.readline().strip()
    finally:
        kept.kill()
        kept.wait(timeout=10)
    assert vpn.returncode == 0, vpn.stdout + vpn.stderr
    assert net.runner_key not in vpn.stdout + vpn.stderr  # the private key is never printed
    assert "full-tunnel" not in vpn.stdout  # no /0 warning for the recommended configuration
    wg_quick = [line for line in vpn.stderr.splitlines() if line.startswith("[#]")]
    print(f"deploy-vpn.sh up: exit 0; wg-quick ran {wg_quick}; {vpn.stdout.strip().splitlines()[-1]!r}")
    to_server, to_other = _route(net, address), _route(net, RUNNER_PEER)
    print(f"routes: {to_server!r}; {to_other!r}")
    assert " dev wg-deploy " in to_server and " dev wg-deploy " not in to_other
    print(f"connection to {RUNNER_PEER} opened before the tunnel: before {first!r}, after {second!r}")
    assert first.endswith(f" {RUNNER_ADDRESS}") and second == first, (first, second)

    # the pipeline's `pulumi up`: a changed app's deploy, its SSH from the runner
    cfg = copy.deepcopy(deployed)
    cfg["apps"][0]["env"] = {"GREETING": "hello from the pipeline"}
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(cfg))
    since = int(time.time()) - 1
    up = net.in_runner([sys.executable, "-m", "tests.e2e.test_gitops_access", str(deployer.state), str(config_file)],
                       cwd=ROOT)  # fmt: skip
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    steps = json.loads(next(line for line in up.stdout.splitlines() if line.startswith(MARK))[len(MARK):])
    print(f"pipeline up from the runner: {steps}")
    assert ["update", "hello-deploy"] in [s[:2] for s in steps]
    assert get_json(f"http://{address}/hello/pid")["greeting"] == "hello from the pipeline"
    log = lab.ssh(host_name, f"journalctl -u ssh -o cat --since=@{since} | grep 'Accepted publickey' || true",
                  check=True).stdout.decode()  # fmt: skip
    own = lab.host(host_name).host_end  # this test's own `journalctl` login, from the build machine
    sources = sorted({line.split(" from ")[1].split()[0] for line in log.splitlines() if " from " in line} - {own})
    print(f"sshd logins during the pipeline (besides this query's from {own}) came from {sources}")
    assert sources == [GATEWAY_OFFICE]

    vpn = net.in_runner(["bash", str(VPN_SCRIPT), "down"], env={"RUNNER_TEMP": str(tmp_path)}, timeout=60)
    assert vpn.returncode == 0, vpn.stdout + vpn.stderr
    links = net.in_runner(["ip", "-o", "link"]).stdout
    assert "wg-deploy" not in links and net.runner_pids() == []
    assert not (tmp_path / "plumber-vpn" / "wg-deploy.conf").exists()
    print(f"deploy-vpn.sh down: {vpn.stdout.strip()}; processes left in the runner's namespace: {net.runner_pids()}")

    # after: closed again; HTTP still served; the host's firewall never changed
    _assert_ssh_closed_http_open(net, lab, host_name, address, "after")
    assert _ufw_added(lab, host_name) == rules
    assert curl("-sf", f"http://{address}/hello/health").returncode == 0


def _main(argv: list[str]) -> int:
    """`pulumi up --stack local` with the test engine: STATE CONFIG (JSON file)."""
    state, config = Path(argv[0]), json.loads(Path(argv[1]).read_text())
    _, result = Engine(state).deploy(config, stack="local")
    print(MARK + json.dumps([[s.op, s.name, round(s.seconds, 1), s.runner] for s in result.steps]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
