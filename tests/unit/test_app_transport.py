"""How an app's code reaches the server (issue 13): a deterministic tar copied by
`<app>-upload` (pulumi-command's CopyToRemote), the Pulumi state holding its
path and hash only; the env file alone on the deploy's stdin."""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

import pulumi
import pytest

from bench import state as bench_state
from components import bundle as bundle_mod
from components.bundle import BUILD_DIR, make_bundle, release_id
from tests.conftest import local_overrides
from tests.program import ProgramRun, run_program, stack_config
from tests.static.rendered import script_of

ROOT = Path(__file__).resolve().parents[2]
COPY = "command:remote:CopyToRemote"


def _config(source: Path, **app: Any) -> dict[str, Any]:
    cfg = {**stack_config("local"), **local_overrides()}
    cfg.pop("forward_root", None)
    cfg["apps"] = [{"name": "big", "source": str(source), **app}]
    return cfg


@pytest.fixture
def app(tmp_path: Path) -> Path:
    src = tmp_path / "big"
    shutil.copytree(ROOT / "examples" / "hello", src)
    (src / "data").mkdir()
    (src / "data" / "model.bin").write_bytes(os.urandom(256 * 1024))
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return src


def _bundles_of(run: ProgramRun) -> list[Path]:
    return [ROOT / r.inputs["source"].path for r in run.of_type(COPY)]


def test_upload_is_a_relative_file_asset_known_at_preview(app: Path) -> None:
    """CopyToRemote's Check wants a path-based FileAsset (copyController.go:101-106); an unknown
    source would fail it in a preview, so the source never depends on another resource."""
    for preview in (False, True):
        run = run_program(_config(app), stack="local", preview=preview)
        upload = run.named("big-upload")
        source = upload.inputs["source"]
        assert isinstance(source, pulumi.FileAsset)
        assert not Path(source.path).is_absolute() and source.path.startswith(".build/bundles/")
        assert (ROOT / source.path).is_file()
        assert upload.inputs["remotePath"] == f".plumber-hosting/uploads/big/{release_id(app)}.tar"
        assert upload.secret_inputs == {"connection"}
        deploy = run.named("big-deploy")
        assert upload.urn in deploy.dependencies  # copied before the deploy runs
        assert not upload.dependencies  # no edge of its own: its parent (the component) orders it


def test_bundle_is_the_same_bytes_on_any_machine(app: Path, tmp_path: Path) -> None:
    """Same code from another checkout (other mtimes, a fresh build directory): the same path and
    SHA-256, so the state does not change and nothing is copied again."""
    a = make_bundle(app, tmp_path / "laptop")
    other = tmp_path / "ci" / "big"
    shutil.copytree(app, other)
    os.utime(other / "plumber.R", (1, 1))
    b = make_bundle(other, tmp_path / "ci")
    assert (a.release, a.path, a.sha256, a.size) == (b.release, b.path, b.sha256, b.size)
    assert a.path == f"{BUILD_DIR.as_posix()}/{a.release}.tar"
    assert a.release == release_id(app)  # the release keeps the name it always had


def test_bundle_holds_the_code_only(app: Path, tmp_path: Path) -> None:
    b = make_bundle(app, tmp_path)
    with tarfile.open(tmp_path / b.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"app/plumber.R", "app/data/model.bin", "app/run.sh"}  # no .git, no env file
    assert members["app/run.sh"].mode == 0o755 and members["app/plumber.R"].mode == 0o644
    assert {(m.uid, m.mtime) for m in members.values()} == {(0, 0)}


def test_a_one_line_change_is_a_new_release_and_a_new_copy(app: Path) -> None:
    before = run_program(_config(app), stack="local")
    (app / "plumber.R").write_text((app / "plumber.R").read_text() + "\n# v2\n")
    after = run_program(_config(app), stack="local")
    old, new = before.named("big-upload").inputs, after.named("big-upload").inputs
    assert old["source"].path != new["source"].path and old["remotePath"] != new["remotePath"]
    assert before.named("big-deploy").inputs["stdin"] == after.named("big-deploy").inputs["stdin"]
    new_script = script_of(after.named("big-deploy").inputs["create"])
    bundle = make_bundle(app, ROOT)
    assert f"BUNDLE_SHA256={bundle.sha256}" in new_script  # the deploy checks what it unpacks
    assert f"~root/{new['remotePath']}" in new_script


def test_a_stale_or_corrupt_bundle_in_the_build_directory_is_packed_again(app: Path, tmp_path: Path) -> None:
    good = make_bundle(app, tmp_path)
    path = tmp_path / good.path
    path.write_bytes(path.read_bytes()[:-2048] + b"x" * 2048)  # same name, other bytes
    again = make_bundle(app, tmp_path)
    assert again.sha256 == good.sha256


def test_unused_bundles_are_pruned_after_two_weeks(app: Path, tmp_path: Path) -> None:
    build = tmp_path / BUILD_DIR
    build.mkdir(parents=True)
    old, recent = build / "0123456789ab.tar", build / "ba9876543210.tar"
    old.write_bytes(b"old")
    recent.write_bytes(b"recent")
    long_ago = time.time() - (bundle_mod.PRUNE_AFTER_DAYS + 1) * 86400
    os.utime(old, (long_ago, long_ago))
    b = make_bundle(app, tmp_path)
    assert not old.exists() and recent.exists() and (tmp_path / b.path).exists()


def test_stdin_is_the_env_file_alone_and_secret(app: Path) -> None:
    cfg = _config(app, env={"MODE": "fast"}, secret_env={"TOKEN": "s3cr3t"})
    run = run_program(cfg, stack="local", secret_keys=("apps",))
    deploy = run.named("big-deploy")
    assert deploy.inputs["stdin"].startswith("# Managed by plumber-hosting: environment of app big ")
    assert 'TOKEN="s3cr3t"' in deploy.inputs["stdin"] and len(deploy.inputs["stdin"]) < 500
    assert "stdin" in deploy.secret_inputs
    for r in run.resources:  # the secret is nowhere else
        for k, v in r.inputs.items():
            assert k in r.secret_inputs or "s3cr3t" not in repr(v), (r.name, k)


def _first(script: str, pattern: str) -> int:
    lines = script.splitlines()
    return next(i for i, line in enumerate(lines) if re.search(pattern, line))


def _after_droplet_check(script: str, exits: str) -> str:
    """The script after the preamble's refusal to run on another droplet, which reads stdin first."""
    lines = script.splitlines()
    refusal = _first(script, r"^\s*cat >/dev/null \|\| true$")
    assert refusal + 2 == _first(script, exits) and "refusing to run" in lines[refusal + 1]
    return "\n".join(lines[refusal + 3 :])


def test_every_script_given_stdin_reads_all_of_it_before_it_can_exit(app: Path) -> None:
    """pulumi-command pipes stdin to create, update and delete (commandOutputs.go:73-75); a command
    that exits before reading it fails with EOF over x/crypto/ssh whatever its exit status."""
    run = run_program(_config(app), stack="local")
    for cmd in run.commands:
        if not cmd.inputs.get("stdin"):
            continue
        deploy, delete = script_of(cmd.inputs["create"]), script_of(cmd.inputs["delete"])
        exits = r"^[^#]*\bexit\b"  # the first exit statement (comments aside)
        deploy, delete = _after_droplet_check(deploy, exits), _after_droplet_check(delete, exits)
        assert _first(deploy, r'^cat >"\$work/app.env"$') < _first(deploy, exits)
        assert _first(delete, r"^cat >/dev/null$") < _first(delete, exits)


def test_removal_cleans_the_uploads_of_the_connection_user(app: Path) -> None:
    cfg = {**_config(app), "host": {"address": "192.0.2.5", "user": "deploy", "port": 22}}
    run = run_program(cfg, stack="local")
    deploy = run.named("big-deploy").inputs
    assert "getent passwd deploy" in script_of(deploy["create"])
    delete = script_of(deploy["delete"])
    assert "getent passwd deploy" in delete and '.plumber-hosting/uploads/"$APP"' in delete
    assert run.named("big-upload").inputs["connection"]["user"] == "deploy"


def test_state_holds_no_app_bytes(tmp_path: Path) -> None:
    """The records the engine would write for the app: the same size at 1 and 3 MiB, the code-carrying
    fields under 2 KiB; before, the deploy's stdin held the code (3.56 bytes of state per gzipped byte)."""
    rows = []
    for mb in (1, 3):
        source = bench_state.make_app(tmp_path, mb)
        run = run_program(bench_state.app_config(source), stack="local")
        rows.append(bench_state.state_row(mb, source, run))
        for b in _bundles_of(run):
            b.unlink()
    small, large = rows
    assert small.after_total == large.after_total and small.after_code == large.after_code
    assert large.after_code <= bench_state.STATE_GOAL
    assert large.before_code > 3 * (3 << 20) and large.before_total > 40 * large.after_total


def test_another_server_gets_a_new_copy(app: Path) -> None:
    """A connection change alone updates a CopyToRemote without copying (copyController.go:148);
    the server's address, port and user are its triggers, whose change replaces it (a new copy)."""
    one = run_program({**_config(app), "host": {"address": "192.0.2.5", "user": "root", "port": 22}}, stack="local")
    same = run_program({**_config(app), "host": {"address": "192.0.2.5", "user": "root", "port": 22}}, stack="local")
    moved = run_program({**_config(app), "host": {"address": "192.0.2.6", "user": "root", "port": 22}}, stack="local")
    upload = one.named("big-upload")
    assert "triggers[*]" in upload.replace_on_changes
    assert upload.inputs["triggers"] == same.named("big-upload").inputs["triggers"] == ["192.0.2.5", 22, "root"]
    assert moved.named("big-upload").inputs["triggers"] != upload.inputs["triggers"]
