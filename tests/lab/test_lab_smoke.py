"""Smoke test of the lab itself: one fresh droplet-like host, apt proxy, pebble."""

from __future__ import annotations

import json
import shlex

import pytest
import testinfra.host

from tests.lab.fixtures import lab_fixture, lab_host_fixture  # noqa: F401
from tests.lab.lab import Lab

pytestmark = pytest.mark.e2e


def test_systemd_is_running(lab_host: testinfra.host.Host) -> None:
    out = lab_host.run("systemctl is-system-running")
    failed = lab_host.run("systemctl --failed --no-legend --plain").stdout
    assert out.stdout.strip() == "running", failed


def test_sshd_is_active(lab_host: testinfra.host.Host) -> None:
    ssh = lab_host.service("ssh")
    assert ssh.is_running
    assert ssh.is_enabled
    cfg = lab_host.run("sshd -T").stdout
    assert "permitrootlogin without-password" in cfg
    assert "passwordauthentication no" in cfg


def test_droplet_like_basics(lab: Lab, lab_host: testinfra.host.Host) -> None:
    state = lab.state
    assert state is not None
    h = state.hosts[0]
    assert lab_host.check_output("hostname") == h.name
    assert f"VERSION_CODENAME={h.suite}" in lab_host.file("/etc/os-release").content_string
    assert lab_host.check_output("date +%Z") == "UTC"
    for tool in ("curl", "sudo", "gpg", "ps", "less", "ping", "crontab", "python3", "ip"):
        assert lab_host.exists(tool), tool
    assert lab_host.service("cron").is_running
    sources = lab_host.file("/etc/apt/sources.list").content_string
    for suite in (f"{h.suite} main", f"{h.suite}-updates main", f"{h.suite}-security main"):
        assert suite in sources
    assert state.apt_cacher_ng is not None
    proxy = lab_host.file("/etc/apt/apt.conf.d/01proxy").content_string
    assert f"http://{h.host_end}:{state.apt_cacher_ng.proxy_port}" in proxy
    assert f"nameserver {h.host_end}" in lab_host.file("/etc/resolv.conf").content_string


def test_fresh_host_has_no_app_stack(lab_host: testinfra.host.Host) -> None:
    for pkg in ("certbot", "nginx", "r-base-core", "ufw"):
        assert not lab_host.package(pkg).is_installed, pkg
    for cmd in ("certbot", "nginx", "R", "Rscript", "ufw"):
        assert not lab_host.exists(cmd), cmd


def test_apt_install_through_proxy(lab_host: testinfra.host.Host) -> None:
    lab_host.run_expect([0], "apt-get update -q")
    lab_host.run_expect([0], "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends hello")
    assert lab_host.package("hello").is_installed
    assert lab_host.check_output("hello") == "Hello, world!"


def test_pebble_directory_answers_in_guest(lab: Lab, lab_host: testinfra.host.Host) -> None:
    state = lab.state
    assert state is not None and state.pebble is not None
    ca = state.pebble.guest_api_ca_cert_path
    assert lab_host.file(ca).content_string == state.pebble.api_ca_cert_pem
    out = lab_host.check_output("curl -fsS --max-time 10 --cacert %s %s", ca, state.pebble.directory_url)
    directory = json.loads(out)
    assert directory["newAccount"].startswith(state.pebble.directory_url.rsplit("/", 1)[0])


def test_pebble_root_and_dns_api(lab: Lab) -> None:
    assert lab.pebble_root_pem().startswith("-----BEGIN CERTIFICATE-----")
    state = lab.state
    assert state is not None
    lab.dns_add_a("smoke.lab.test", state.hosts[0].address)
    lab.dns_clear_a("smoke.lab.test")


def test_reboot_keeps_the_tree(lab: Lab) -> None:
    name = "lab1"
    lab.ssh(name, "echo kept > /root/reboot-marker", check=True)
    old_pid = lab.host(name).pid
    lab.reboot(name)
    assert lab.host(name).pid != old_pid
    res = lab.ssh(name, "cat /root/reboot-marker; systemctl is-system-running", check=True)
    assert res.stdout.decode().split() == ["kept", "running"]


def test_reset_host_gives_a_fresh_tree(lab: Lab) -> None:
    name = "lab1"
    lab.reset_host(name)
    res = lab.ssh(
        name,
        "test ! -e /root/reboot-marker && ! dpkg -s hello >/dev/null 2>&1 && echo fresh",
        stdin=None,
    )
    assert res.stdout.decode().strip() == "fresh", res.stderr
    # ssh() passes stdin through
    res = lab.ssh(name, f"cat > /tmp/x && cat {shlex.quote('/tmp/x')}", stdin=b"data\n")
    assert res.stdout == b"data\n"
