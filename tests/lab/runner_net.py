"""A stand-in CI runner and a stand-in VPN gateway next to a lab host.

For the GitOps access test (tests/e2e/test_gitops_access.py): two network
namespaces of our own, linked by veth pairs to each other and to the lab host's
namespace; traffic only flows between them.

    runner (RUNNER_NS)  198.18.0.2 ──"internet"── 198.18.0.1  lab host (its netns)
                        198.18.1.2 ──────────────  198.18.1.1  gateway (GATEWAY_NS)
                                                   10.213.99.1 ──"office"── 10.213.99.2  lab host

The runner's address (198.18.0.2, from the benchmarking range) is outside the
local stack's admin_cidrs, as a GitHub-hosted runner's is outside prod's. The
gateway's office address 10.213.99.1 is inside them, as a team's VPN gateway
is. The gateway runs WireGuard (the kernel's, else wireguard-go) on UDP
198.18.1.1:51820 with the runner as its one peer, forwards, and masquerades the
tunnel's traffic to its office address: the usual WireGuard server set-up. The
runner's own side of the tunnel is what ``.github/scripts/deploy-vpn.sh``
brings up from :meth:`RunnerNetwork.wg_config`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

RUNNER_NS = "ph-ci-runner"
GATEWAY_NS = "ph-ci-vpngw"
RUNNER_ADDRESS = "198.18.0.2"
RUNNER_PEER = "198.18.0.1"  # the lab host's end of the runner's direct link
GATEWAY_PUBLIC = "198.18.1.1"
RUNNER_TO_GATEWAY = "198.18.1.2"
GATEWAY_OFFICE = "10.213.99.1"
HOST_OFFICE = "10.213.99.2"
TUNNEL_GATEWAY = "10.200.0.1"
TUNNEL_RUNNER = "10.200.0.2"
WG_PORT = 51820
GATEWAY_WG = "wg-ci-gw"


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    res = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def _veth(a: str, a_ns: str, a_addr: str, b: str, b_ns: str, b_addr: str) -> None:
    _run(["ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns])
    for name, ns, addr in ((a, a_ns, a_addr), (b, b_ns, b_addr)):
        _run(["ip", "-n", ns, "addr", "add", addr, "dev", name])
        _run(["ip", "-n", ns, "link", "set", name, "up"])


class RunnerNetwork:
    """Create with :meth:`up`, remove with :meth:`down` (also as a context manager)."""

    def __init__(self, host_netns: str, host_address: str, workdir: Path) -> None:
        self.host_netns = host_netns
        self.host_address = host_address
        self.workdir = workdir
        self.gateway: subprocess.Popen[bytes] | None = None  # wireguard-go, when started
        self.runner_key = self.runner_pub = self.gateway_pub = ""

    def __enter__(self) -> RunnerNetwork:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        self.down()  # leftovers of an interrupted run
        for ns in (RUNNER_NS, GATEWAY_NS):
            _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _veth("ci-inet", RUNNER_NS, f"{RUNNER_ADDRESS}/24", "ph-ci-inet", self.host_netns, f"{RUNNER_PEER}/24")
        _veth("ci-gw", RUNNER_NS, f"{RUNNER_TO_GATEWAY}/24", "gw-inet", GATEWAY_NS, f"{GATEWAY_PUBLIC}/24")
        _veth("gw-office", GATEWAY_NS, f"{GATEWAY_OFFICE}/24", "ph-ci-office", self.host_netns, f"{HOST_OFFICE}/24")
        # The runner reaches the lab hosts' network straight over its "internet" link;
        # the tunnel's more specific route (the config's AllowedIPs) takes over while it is up.
        net = ".".join(self.host_address.split(".")[:3]) + ".0/24"
        _run(["ip", "-n", RUNNER_NS, "route", "add", net, "via", RUNNER_PEER])
        _run(["ip", "-n", GATEWAY_NS, "route", "add", net, "via", HOST_OFFICE])
        self._gateway()

    def _gateway(self) -> None:
        gw = ["ip", "netns", "exec", GATEWAY_NS]
        gateway_key = _run(["wg", "genkey"]).strip()
        self.gateway_pub = _run(["wg", "pubkey"], stdin=gateway_key).strip()
        self.runner_key = _run(["wg", "genkey"]).strip()
        self.runner_pub = _run(["wg", "pubkey"], stdin=self.runner_key).strip()
        kernel = subprocess.run(["ip", "-n", GATEWAY_NS, "link", "add", GATEWAY_WG, "type", "wireguard"],
                                capture_output=True, check=False)  # fmt: skip
        if kernel.returncode != 0:  # no kernel module: the userspace implementation, in the foreground
            log = self.workdir / "wireguard-go-gateway.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen([*gw, "wireguard-go", "-f", GATEWAY_WG], stdout=out, stderr=out)
            self.gateway = proc
            deadline = time.monotonic() + 10
            while f" {GATEWAY_WG}:" not in _run(["ip", "-n", GATEWAY_NS, "-o", "link"]):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"wireguard-go did not create {GATEWAY_WG}; see {log}")
                time.sleep(0.1)
        key_file = self.workdir / "gateway.key"
        key_file.touch(mode=0o600)
        key_file.write_text(gateway_key + "\n")
        _run([*gw, "wg", "set", GATEWAY_WG, "private-key", str(key_file), "listen-port", str(WG_PORT),
              "peer", self.runner_pub, "allowed-ips", f"{TUNNEL_RUNNER}/32"])  # fmt: skip
        _run(["ip", "-n", GATEWAY_NS, "addr", "add", f"{TUNNEL_GATEWAY}/24", "dev", GATEWAY_WG])
        _run(["ip", "-n", GATEWAY_NS, "link", "set", GATEWAY_WG, "up"])
        _run([*gw, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])  # this namespace's own setting
        _run([*gw, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", f"{TUNNEL_GATEWAY}/24",
              "-o", "gw-office", "-j", "MASQUERADE"])  # fmt: skip

    def wg_config(self) -> str:
        """The runner's wg-quick configuration: the WG_CONFIG secret of a stack's environment."""
        return (
            "[Interface]\n"
            f"PrivateKey = {self.runner_key}\n"
            f"Address = {TUNNEL_RUNNER}/32\n\n"
            "[Peer]\n"
            f"PublicKey = {self.gateway_pub}\n"
            f"Endpoint = {GATEWAY_PUBLIC}:{WG_PORT}\n"
            f"AllowedIPs = {self.host_address}/32\n"
        )

    def in_runner(
        self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on the stand-in runner (in its network namespace)."""
        return subprocess.run(
            ["ip", "netns", "exec", RUNNER_NS, *argv],
            capture_output=True, text=True, check=False, timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})},
        )  # fmt: skip

    def runner_pids(self) -> list[int]:
        res = subprocess.run(["ip", "netns", "pids", RUNNER_NS], capture_output=True, text=True, check=False)
        return [int(p) for p in res.stdout.split() if p.isdigit()]

    def down(self) -> None:
        if self.gateway is not None:
            self.gateway.terminate()
            try:
                self.gateway.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.gateway.kill()
                self.gateway.wait(timeout=10)
            self.gateway = None
        for ns in (RUNNER_NS, GATEWAY_NS):
            if not Path(f"/run/netns/{ns}").exists():
                continue
            # Only our own processes can be in our namespaces (a deploy-vpn.sh's
            # wireguard-go left by a failed test): stop them by PID.
            res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
            for pid in (int(p) for p in res.stdout.split() if p.isdigit()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            # Deleting a namespace deletes its veths, and with them their ends in the lab host's.
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
