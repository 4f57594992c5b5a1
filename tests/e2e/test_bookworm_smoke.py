"""Debian 12 keeps working: on a bookworm lab host (image debian-12-x64 on a
droplet), provisioning, two apps and HTTPS, as a user of an existing server
would get them. The host goes back to the lab's default release afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Deployer, curl, get_json
from tests.lab.lab import Lab


@pytest.fixture(scope="module")
def bookworm(lab: Lab, host_name: str) -> Iterator[str]:
    lab.reset_host(host_name, suite="bookworm")
    try:
        yield host_name
    finally:
        lab.reset_host(host_name, suite=lab.suite)


def test_bookworm_provision_two_apps_https(
    bookworm: str, deployer: Deployer, lab: Lab, address: str, tmp_path: Path
) -> None:
    release = lab.ssh(bookworm, ". /etc/os-release && echo $VERSION_CODENAME", check=True).stdout.decode().strip()
    assert release == "bookworm"
    pebble = lab.state.pebble  # type: ignore[union-attr]
    name = "api.lab.test"
    lab.dns_add_a(name, address)
    cfg: dict[str, Any] = deployer.base()  # two apps: hello (docs) and hashing (an R package from cran_repo)
    cfg.update(
        domain="lab.test",
        hostname="api",
        manage_dns=False,
        https={"email": "ops@lab.test", "accept_tos": True, "acme_server": pebble.directory_url, "acme_ca_cert": pebble.api_ca_cert_pem},
    )
    started = time.monotonic()
    deployer.up(cfg)
    seconds = time.monotonic() - started
    root = tmp_path / "pebble-root.pem"
    root.write_text(lab.pebble_root_pem())
    tls = ("--cacert", str(root), "--resolve", f"{name}:443:{address}")
    assert get_json(f"https://{name}/hello/hello?name=bookworm", *tls) == {"message": "Hello, bookworm!"}
    assert get_json(f"https://{name}/hash/sha256?text=abc", *tls)["sha256"].startswith("ba7816bf")
    res = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", f"Host: {name}", f"http://{address}/hello/health")
    assert res.stdout == f"301 https://{name}/hello/health"
    # docs behind the prefix: the spec names the URL the client used
    assert get_json(f"https://{name}/hello/openapi.json", *tls)["servers"] == [{"url": f"https://{name}/hello"}]
    r = lab.ssh(bookworm, "Rscript -e 'cat(as.character(getRversion()))'", check=True).stdout.decode()
    assert r.startswith("4.2.")
    print(f"bookworm smoke: provision, 2 apps and HTTPS in {seconds:.1f}s on Debian 12 (R {r})")
