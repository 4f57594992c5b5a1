"""Zero-downtime releases: health-gated rolling and blue/green switches,
rollback of a broken release, retries past a dead worker, kept releases,
sticky sessions. Every check runs under a steady load from outside the host."""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Deployer, assert_previews_only_app, curl, get_json
from tests.e2e.load import SteadyLoad
from tests.engine import CommandFailedError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def apps_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("release-apps")
    for name in ("duo", "solo"):
        shutil.copytree(ROOT / "examples" / "hello", d / name)
    return d


def version(src: Path, label: str) -> None:
    """Make the app report `label` from GET /version."""
    text = (src / "plumber.R").read_text().split("\n#* Release label", 1)[0]
    text += f'\n#* Release label\n#* @get /version\n#* @serializer unboxedJSON\nfunction() list(version = "{label}")\n'
    (src / "plumber.R").write_text(text)


@pytest.fixture(scope="module")
def config(deployer: Deployer, apps_dir: Path) -> dict[str, Any]:
    for name in ("duo", "solo"):
        version(apps_dir / name, "v1")
    cfg = deployer.base()
    cfg["apps"] = [
        {"name": "hello", "source": "examples/hello", "health_path": "/health"},
        {"name": "duo", "source": str(apps_dir / "duo"), "workers": 2, "health_path": "/health"},
        {"name": "solo", "source": str(apps_dir / "solo"), "workers": 1, "health_path": "/health"},
        {"name": "sticky", "source": "examples/hello", "workers": 3, "sticky": True, "health_path": "/health"},
    ]
    cfg.pop("forward_root", None)
    deployer.up(cfg)
    return cfg


def ver(address: str, app: str) -> str:
    return str(get_json(f"http://{address}/{app}/version")["version"])


@pytest.mark.parametrize("app", ["duo", "solo"])
def test_redeploy_under_load_loses_no_request(deployer: Deployer, config: dict[str, Any], apps_dir: Path, address: str, app: str) -> None:
    assert ver(address, app) == "v1"
    version(apps_dir / app, "v2")
    assert_previews_only_app(deployer.preview(config), app)
    with SteadyLoad(address, f"/{app}/version", rate=25) as load:
        time.sleep(1)
        result = deployer.up(config)
        time.sleep(1)
    assert result.ran == [f"update {app}-upload", f"update {app}-deploy"]
    print(f"{app}: {load.result.total} requests during the redeploy, statuses {dict(load.result.statuses)}")
    assert load.result.total > 50
    assert load.result.failed == 0, dict(load.result.statuses)
    assert ver(address, app) == "v2"
    seen = {json.loads(b)["version"] for b in load.result.bodies if b.startswith("{")}
    assert seen <= {"v1", "v2"} and "v2" in seen


def worker_threads(host: Any) -> dict[str, list[list[str]]]:
    """unit -> [pid, tid, nice, comm] of every thread of every process of each running worker (ps's unit
    column: the process's systemd unit, read from its cgroup)."""
    out: dict[str, list[list[str]]] = {}
    for line in host.check_output("ps -eLo unit=,pid=,tid=,ni=,comm=").splitlines():
        unit, *rest = line.split(None, 4)
        if unit.startswith("plumber-") and "@" in unit:
            out.setdefault(unit, []).append(rest)
    return out


def test_workers_serve_at_normal_priority_on_every_thread(config: dict[str, Any], host: Any) -> None:
    """Issue 23 point 15: after deploys (the first one, and the redeploys above), every thread of every
    worker runs at the priority systemd gives the unit (Nice=, 0), as plumberDeploy's process does:
    nice is per thread on Linux, so a worker reniced by PID alone kept httpuv's I/O thread (and every
    thread it made while low) at its start-up nice. And no CPUWeight= is left on a worker's cgroup."""
    threads = worker_threads(host)
    assert {u.split("@")[0] for u in threads} >= {"plumber-hello", "plumber-duo", "plumber-solo", "plumber-sticky"}
    low = {}
    for u, rows in threads.items():
        unit_nice = host.check_output(f"systemctl show -p Nice --value {u}")
        weight = host.check_output(f"systemctl show -p CPUWeight --value {u}")
        assert weight in ("", "[not set]", "100", "18446744073709551615"), f"{u}: CPUWeight={weight}"
        assert len(rows) > 1, f"{u}: R and httpuv run more than one thread: {rows}"
        bad = [r for r in rows if r[2] != unit_nice]
        if bad:
            low[u] = bad
    print(f"{sum(map(len, threads.values()))} threads in {len(threads)} workers; at another nice than their unit's: "
          f"{sum(map(len, low.values()))}")
    for u, rows in sorted(low.items()):
        print(f"  {u}: " + ", ".join(f"tid {r[1]} ({r[3]}) nice {r[2]}" for r in rows))
    assert not low, low


def test_next_deploy_gives_threads_left_at_low_priority_theirs_back(deployer: Deployer, config: dict[str, Any],
                                                                    host: Any) -> None:  # fmt: skip
    """A server upgraded from a version that left worker threads at nice 10: the app's next deploy, even one
    that restarts no worker (here keep_releases changes), puts every thread back at the unit's nice."""
    u = next(u for u in worker_threads(host) if u.startswith("plumber-hello@"))
    main = host.check_output(f"systemctl show -p MainPID --value {u}")
    others = [r[1] for r in worker_threads(host)[u] if r[1] != main]
    host.check_output(f"renice -n 10 -p {' '.join(others)}")  # what the old nice_worker left behind
    assert {r[2] for r in worker_threads(host)[u] if r[1] != main} == {"10"}
    cfg = copy.deepcopy(config)
    next(a for a in cfg["apps"] if a["name"] == "hello")["keep_releases"] = 4
    try:
        assert deployer.up(cfg).ran == ["update hello-deploy"]
    finally:
        deployer.up(config)
    assert host.check_output(f"systemctl show -p MainPID --value {u}") == main  # not restarted
    rows = worker_threads(host)[u]
    print(f"{u} after the next deploy: " + ", ".join(f"tid {r[1]} ({r[3]}) nice {r[2]}" for r in rows))
    assert {r[2] for r in rows} == {"0"}, rows


@pytest.mark.parametrize("app", ["duo", "solo"])
def test_broken_release_keeps_the_old_one_serving(deployer: Deployer, config: dict[str, Any], apps_dir: Path, address: str, host: Any, app: str) -> None:
    before = ver(address, app)
    plumber = apps_dir / app / "plumber.R"
    good = plumber.read_text()
    plumber.write_text('stop("release is broken: boom-' + app + '")\n' + good)
    try:
        with SteadyLoad(address, f"/{app}/version", rate=25) as load:
            time.sleep(1)
            with pytest.raises(CommandFailedError) as failed:
                deployer.up(config)
            time.sleep(1)
    finally:
        plumber.write_text(good)
    message = str(failed.value)
    print(f"{app}: {load.result.total} requests during the failed deploy, statuses {dict(load.result.statuses)}")
    assert f"release is broken: boom-{app}" in message  # the R error, from the worker's journal
    assert "failed its health check" in message and "rolling back" in message
    assert load.result.failed == 0, dict(load.result.statuses)
    assert ver(address, app) == before
    releases = host.check_output(f"ls /srv/plumber/{app}/releases").split()
    current = host.check_output(f"readlink /srv/plumber/{app}/current").rsplit("/", 1)[-1]
    assert current in releases and len(releases) <= 3
    bad = deployer.last.named(f"{app}-deploy").inputs["create"].split("RELEASE=")[1].split("\n")[0]  # type: ignore[union-attr]
    assert bad not in releases, "the failed release was not cleaned up"
    # the next good deploy goes through (the engine kept the old state)
    deployer.up(config)
    assert ver(address, app) == before


def test_killed_worker_costs_no_failed_get(config: dict[str, Any], address: str, host: Any) -> None:
    ports = sorted({get_json(f"http://{address}/duo/pid")["port"] for _ in range(10)})
    assert len(ports) == 2
    pid = host.check_output(f"systemctl show -p MainPID --value plumber-duo@{ports[0]}.service")
    with SteadyLoad(address, "/duo/pid", rate=25) as load:
        time.sleep(1)
        host.run(f"kill -9 {pid}")
        killed = time.monotonic()
        back = None
        while time.monotonic() - killed < 10:
            if host.run(f"curl -sf http://127.0.0.1:{ports[0]}/health").rc == 0:
                back = time.monotonic() - killed
                break
            time.sleep(0.2)
        time.sleep(1)
    print(f"kill -9: {load.result.total} requests, statuses {dict(load.result.statuses)}, worker back after {back}s")
    assert load.result.failed == 0, dict(load.result.statuses)
    assert back is not None and back < 5


def test_rollback_to_a_kept_release_unpacks_nothing(deployer: Deployer, config: dict[str, Any], apps_dir: Path, address: str, host: Any) -> None:
    src = apps_dir / "duo"
    version(src, "r1")
    deployer.up(config)
    rel1 = host.check_output("readlink /srv/plumber/duo/current")
    inode1 = host.check_output(f"stat -c %i {rel1}")
    version(src, "r2")
    deployer.up(config)
    assert ver(address, "duo") == "r2"
    version(src, "r1")
    result = deployer.up(config)
    assert ver(address, "duo") == "r1"
    assert host.check_output("readlink /srv/plumber/duo/current") == rel1
    assert host.check_output(f"stat -c %i {rel1}") == inode1  # the kept release, not a new copy
    # CopyToRemote copies again when the hash changes (copyController.go:148), r2 -> r1 included;
    # the deploy finds the release on the server and does not unpack it
    upload, deploy = result.steps
    assert (upload.name, deploy.name) == ("duo-upload", "duo-deploy")
    assert "not unpacking it again" in deploy.stderr
    sent = deployer.last.named("duo-deploy").inputs["stdin"]  # type: ignore[union-attr]
    assert sent.startswith("# Managed by plumber-hosting: environment of app duo ")  # the env file only
    print(f"rollback: copy {upload.seconds:.2f} s, deploy {deploy.seconds:.2f} s, deploy stdin {len(sent)} bytes")
    assert len(host.check_output("ls /srv/plumber/duo/releases").split()) <= 3


def test_sticky_sessions_pin_a_client_to_one_worker(config: dict[str, Any], address: str, tmp_path: Path) -> None:
    jar = tmp_path / "cookies"
    pids = set()
    for _ in range(10):
        res = curl("-f", "-c", str(jar), "-b", str(jar), f"http://{address}/sticky/pid")
        assert res.returncode == 0, res.stderr
        pids.add(json.loads(res.stdout)["pid"])
    assert len(pids) == 1, pids
    assert "plumber_sticky" in jar.read_text()
    fresh = {get_json(f"http://{address}/sticky/pid")["pid"] for _ in range(30)}
    assert len(fresh) > 1, "clients without the cookie all landed on one worker"
    headers = curl("-s", "-D", "-", "-o", "/dev/null", f"http://{address}/sticky/health").stdout.lower()
    assert "x-content-type-options: nosniff" in headers  # the location's own add_header keeps the security headers


def test_resizing_a_sticky_app_keeps_clients_pinned(deployer: Deployer, config: dict[str, Any], address: str, tmp_path: Path) -> None:
    next(a for a in config["apps"] if a["name"] == "sticky")["workers"] = 2
    assert deployer.up(config).ran == ["update sticky-deploy"]  # same code: nothing copied
    jar = tmp_path / "cookies"
    pids = {json.loads(curl("-f", "-c", str(jar), "-b", str(jar), f"http://{address}/sticky/pid").stdout)["pid"] for _ in range(8)}
    assert len(pids) == 1


def test_noop_up_runs_nothing(deployer: Deployer, config: dict[str, Any]) -> None:
    assert deployer.up(config).steps == []


def test_destroy_removes_the_release_apps(deployer: Deployer, host: Any) -> None:
    result = deployer.destroy()
    assert {"duo-deploy", "solo-deploy", "sticky-deploy", "hello-deploy", "site-nginx"} <= set(result.ops("delete"))
    assert host.check_output("systemctl list-units --all --plain --no-legend 'plumber-*@*' | wc -l") == "0"
    assert host.check_output("ls /srv/plumber | wc -l") == "0"
