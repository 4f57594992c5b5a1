"""A large app end to end (issue 13): 50 MiB of incompressible data travels as a
file copied by `<app>-upload` (CopyToRemote over SFTP), not through the state;
it deploys, takes a one-line code change, rolls back, is removed, and the stack
is destroyed, through the Go SSH runner that behaves like pulumi-command, while
another app keeps serving."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Deployer, get_json, status
from tests.e2e.load import SteadyLoad

ROOT = Path(__file__).resolve().parents[2]
MIB = 50
UPLOADS = "/root/.plumber-hosting/uploads/big"


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("large") / "big"
    shutil.copytree(ROOT / "examples" / "hello", src)
    (src / "data").mkdir()
    rng = random.Random(13)
    with (src / "data" / "model.bin").open("wb") as f:
        for _ in range(MIB):
            f.write(rng.randbytes(1 << 20))
    return src


@pytest.fixture(scope="module")
def config(deployer: Deployer, big: Path) -> dict[str, Any]:
    cfg = deployer.base()
    cfg.pop("forward_root", None)
    cfg["apps"] = [
        {"name": "hello", "source": "examples/hello", "workers": 2, "health_path": "/health"},
        {"name": "big", "source": str(big), "workers": 1, "health_path": "/health"},
    ]
    return cfg


def release_of(address: str) -> str:
    return str(get_json(f"http://{address}/big/pid")["release"])


def declared_release(deployer: Deployer) -> str:
    return str(deployer.last.named("big-upload").inputs["remotePath"].rsplit("/", 1)[1].removesuffix(".tar"))  # type: ignore[union-attr]


def other_app_load(address: str) -> SteadyLoad:
    return SteadyLoad(address, "/hello/health", rate=10, max_seconds=600)


def check_other_app(load: SteadyLoad, what: str) -> None:
    print(f"{what}: hello answered {load.result.total} requests, statuses {dict(load.result.statuses)}")
    assert load.result.total > 5 and load.result.failed == 0, dict(load.result.statuses)


def test_deploy(deployer: Deployer, config: dict[str, Any], big: Path, address: str, host: Any) -> None:
    t0 = time.monotonic()
    result = deployer.up(config)
    took = time.monotonic() - t0
    assert {"create big-upload", "create big-deploy"} <= set(result.ran)
    upload = deployer.last.named("big-upload").inputs  # type: ignore[union-attr]
    tar = ROOT / upload["source"].path
    assert not Path(upload["source"].path).is_absolute() and tar.stat().st_size > MIB << 20
    # the deploy's inputs carry the env file, not the code
    assert len(deployer.last.named("big-deploy").inputs["stdin"]) < 1000  # type: ignore[union-attr]
    rel = declared_release(deployer)
    assert release_of(address) == rel
    want = hashlib.sha256((big / "data" / "model.bin").read_bytes()).hexdigest()
    assert host.check_output(f"sha256sum /srv/plumber/big/releases/{rel}/data/model.bin").split()[0] == want
    assert host.check_output(f"ls {UPLOADS}").split() == [f"{rel}.tar"]
    steps = {s.name: s.seconds for s in result.steps}
    print(f"first deploy of a {MIB} MiB app: up {took:.1f} s, copy {steps['big-upload']:.2f} s, "
          f"deploy {steps['big-deploy']:.2f} s")


def test_one_line_change(deployer: Deployer, config: dict[str, Any], big: Path, address: str, host: Any) -> None:
    first = release_of(address)
    plumber = big / "plumber.R"
    plumber.write_text(plumber.read_text() + "\n# a one-line change\n")
    with other_app_load(address) as load:
        time.sleep(1)
        result = deployer.up(config)
        time.sleep(1)
    assert result.ran == ["update big-upload", "update big-deploy"]
    second = declared_release(deployer)
    assert second != first and release_of(address) == second
    check_other_app(load, "one-line change")
    assert host.check_output(f"ls {UPLOADS}").split() == [f"{second}.tar"]  # the old bundle is gone
    assert first in host.check_output("ls /srv/plumber/big/releases").split()  # the old release is kept


def test_rollback(deployer: Deployer, config: dict[str, Any], big: Path, address: str, host: Any) -> None:
    plumber = big / "plumber.R"
    plumber.write_text(plumber.read_text().replace("\n# a one-line change\n", ""))
    kept = sorted(host.check_output("ls /srv/plumber/big/releases").split())
    with other_app_load(address) as load:
        time.sleep(1)
        result = deployer.up(config)
        time.sleep(1)
    back = declared_release(deployer)
    assert back in kept and release_of(address) == back
    # copied again (CopyToRemote copies when the hash changes, copyController.go:148), not unpacked
    assert result.ran == ["update big-upload", "update big-deploy"]
    assert "not unpacking it again" in result.steps[-1].stderr
    check_other_app(load, "rollback")
    print(f"rollback: copy {result.steps[0].seconds:.2f} s, deploy {result.steps[1].seconds:.2f} s")


def test_a_delete_reads_all_of_its_stdin(deployer: Deployer, config: dict[str, Any], address: str) -> None:
    """The delete text of <app>-deploy, run by the Go runner with 5 MiB on stdin (pulumi-command
    pipes the last stdin into a delete, commandOutputs.go:73-75): no EOF. It removes an app that
    is not there, so it runs to the end and leaves the host alone."""
    from tests import sshrun

    deploy = deployer.last.named("big-deploy").inputs  # type: ignore[union-attr]
    text = deploy["delete"].replace("APP=big", "APP=not-deployed").replace("'big'", "'not-deployed'")
    assert "not-deployed" in text
    out = sshrun.run(deploy["connection"], text, stdin=os.urandom(5 << 20).hex()[: 5 << 20])
    assert out.error is None, out.error
    assert release_of(address)  # big still serves


def test_remove(deployer: Deployer, config: dict[str, Any], address: str, host: Any) -> None:
    cfg = json.loads(json.dumps(config))
    cfg["apps"] = [a for a in cfg["apps"] if a["name"] != "big"]
    with other_app_load(address) as load:
        time.sleep(1)
        result = deployer.up(cfg)
        time.sleep(1)
    assert sorted(result.ran) == ["delete big-deploy", "delete big-upload"]
    assert status(f"http://{address}/big/health") == 404
    assert not host.file("/srv/plumber/big").exists and not host.file(UPLOADS).exists
    check_other_app(load, "removal")
    config["apps"] = cfg["apps"]


def test_destroy(deployer: Deployer, config: dict[str, Any], big: Path, address: str, host: Any) -> None:
    config["apps"].append({"name": "big", "source": str(big), "workers": 1, "health_path": "/health"})
    deployer.up(config)
    assert status(f"http://{address}/big/health") == 200
    result = deployer.destroy()
    assert {"big-deploy", "big-upload", "hello-deploy", "site-nginx", "provision-server"} <= set(result.ops("delete"))
    assert not host.file("/srv/plumber/big").exists and not host.file(UPLOADS).exists
    assert host.check_output("systemctl list-units --all --plain --no-legend 'plumber-*@*' | wc -l") == "0"
