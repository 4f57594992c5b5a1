"""Laptop and CI deploy the same bundle (issue 23 point 11, review D12).

An app directory inside a git work tree is packed as git has it: the files git tracks, their
executable bit as git records it, plus the app's ``include`` list; untracked scratch files and a
``.Renviron`` on the laptop change nothing. ``.Renviron``, ``.env``, ``.Rhistory``,
``.Rproj.user/`` and ``.git/`` never go into a bundle, in git or not. The preview names what
was left out when it matters.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from components.bundle import make_bundle
from components.config import ConfigError
from tests.program import ProgramRun, run_program
from tests.unit.test_config import existing_host

HEALTH = '#* @get /health\nfunction() list(status = "ok")\n'
SECRET = "DB_PASSWORD=hunter2-do-not-ship\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A repository holding an app under api/: code, a helper script, small data; big data ignored."""
    repo = tmp_path / "origin"
    app = repo / "api"
    (app / "R").mkdir(parents=True)
    (app / "data").mkdir()
    (app / "plumber.R").write_text("source('R/helpers.R')\n" + HEALTH)
    (app / "R" / "helpers.R").write_text("double <- function(x) 2 * x\n")
    (app / "data" / "small.csv").write_text("a,b\n1,2\n")
    (app / "run.sh").write_text("#!/bin/sh\nexec Rscript -e 'plumber::pr_run(plumber::pr(\"plumber.R\"))'\n")
    (app / "run.sh").chmod(0o755)
    (app / ".gitignore").write_text("data/*.rds\n.Renviron\n")
    (app / "shared.R").symlink_to("R/helpers.R")  # git records a symlink: never packed
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "api")
    return repo


def clone(origin: Path, where: Path) -> Path:
    git(origin.parent, "clone", "-q", str(origin), str(where))
    return where / "api"


def laptop_mess(app: Path) -> None:
    """What a laptop's copy has that a CI checkout does not."""
    (app / "scratch.R").write_text("x <- read.csv('data/small.csv')  # trying things\n")
    (app / "notes.txt").write_text("todo\n")
    (app / ".Renviron").write_text(SECRET)
    (app / ".env").write_text("TOKEN=abc\n")
    (app / ".Rhistory").write_text("q()\n")
    (app / ".Rproj.user").mkdir()
    (app / ".Rproj.user" / "state").write_text("x\n")
    (app / "data" / "big.rds").write_bytes(b"\x1f\x8b" + b"\0" * 4096)  # ignored by git
    # an editor or a core.fileMode=false checkout dropped the exec bit git records
    git(app, "config", "core.fileMode", "false")
    (app / "run.sh").chmod(0o644)


def members(project: Path, path: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(project / path) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_laptop_and_ci_checkouts_pack_identical_bundles(origin: Path, tmp_path: Path) -> None:
    laptop, ci = clone(origin, tmp_path / "laptop"), clone(origin, tmp_path / "ci")
    laptop_mess(laptop)
    a = make_bundle(laptop, tmp_path / "laptop-project")
    b = make_bundle(ci, tmp_path / "ci-project")
    assert (a.release, a.sha256, a.size) == (b.release, b.sha256, b.size)
    assert (tmp_path / "laptop-project" / a.path).read_bytes() == (tmp_path / "ci-project" / b.path).read_bytes()
    files = members(tmp_path / "laptop-project", a.path)
    assert set(files) == {"app/plumber.R", "app/R/helpers.R", "app/data/small.csv", "app/run.sh", "app/.gitignore"}
    assert files["app/run.sh"].mode == 0o755  # as git records it, not as the laptop's file has it


@pytest.mark.parametrize("in_git", [True, False], ids=["in git (even committed)", "outside git"])
def test_secrets_and_editor_state_are_never_packed(origin: Path, tmp_path: Path, in_git: bool) -> None:
    app = clone(origin, tmp_path / "work")
    laptop_mess(app)
    (app / "sub").mkdir()
    (app / "sub" / ".env").write_text("TOKEN=abc\n")
    (app / "sub" / "code.R").write_text("1\n")
    if in_git:  # committed by mistake: git tracks them, still never packed
        git(app, "add", "-f", ".Renviron", ".env", ".Rhistory", ".Rproj.user", "sub")
        git(app, "commit", "-q", "-m", "oops")
    else:
        subprocess.run(["rm", "-rf", str(tmp_path / "work" / ".git")], check=True)
    b = make_bundle(app, tmp_path / "project")
    names = set(members(tmp_path / "project", b.path))
    assert "app/sub/code.R" in names
    never = {n for n in names if any(p in (".Renviron", ".env", ".Rhistory", ".Rproj.user", ".git") for p in n.split("/"))}
    assert never == set()
    assert SECRET.encode() not in (tmp_path / "project" / b.path).read_bytes()


def _config(app: Path, **extra: Any) -> dict[str, Any]:
    cfg = existing_host()
    cfg["apps"] = [{"name": "api", "source": str(app), "health_path": "/health", **extra}]
    return cfg


def _bundle_names(run: ProgramRun) -> set[str]:
    from tests.program import ROOT

    upload = run.named("api-upload")
    return set(members(ROOT, upload.inputs["source"].path))


def test_include_packs_data_kept_outside_git(origin: Path, tmp_path: Path) -> None:
    laptop, ci = clone(origin, tmp_path / "laptop"), clone(origin, tmp_path / "ci")
    laptop_mess(laptop)
    (ci / "data" / "big.rds").write_bytes((laptop / "data" / "big.rds").read_bytes())  # fetched by the CI job
    runs = [run_program(_config(app, include=["data/big.rds"])) for app in (laptop, ci)]
    assert "app/data/big.rds" in _bundle_names(runs[0])
    uploads = [r.named("api-upload").inputs for r in runs]
    assert [(u["source"].path, u["remotePath"]) for u in uploads] == [(uploads[0]["source"].path, uploads[0]["remotePath"])] * 2


def test_preview_names_files_left_out(origin: Path, tmp_path: Path) -> None:
    laptop = clone(origin, tmp_path / "laptop")
    laptop_mess(laptop)
    run = run_program(_config(laptop), preview=True)
    untracked = [w for w in run.warnings if "not tracked by git" in w]
    assert len(untracked) == 1 and "notes.txt" in untracked[0] and "scratch.R" in untracked[0], run.warnings
    assert "apps[0] (api)" in untracked[0] and "include" in untracked[0]
    secrets = [w for w in run.warnings if "never go into a bundle" in w]
    assert len(secrets) == 1 and ".Renviron" in secrets[0] and ".env" in secrets[0] and "secret_env" in secrets[0]
    assert not any(".Rhistory" in w for w in run.warnings)  # left out quietly: it does not matter
    clean = run_program(_config(clone(origin, tmp_path / "ci")), preview=True)
    assert not [w for w in clean.warnings if "bundle" in w]


def test_entrypoint_git_does_not_track_is_a_config_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "api").mkdir(parents=True)
    git(tmp_path, "init", "-q", str(repo))
    (repo / "README").write_text("x\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "init")
    (repo / "api" / "plumber.R").write_text(HEALTH)  # never added
    with pytest.raises(ConfigError) as err:
        run_program(_config(repo / "api"))
    assert "plumber-hosting:apps[0].source: git tracks neither plumber.R nor entrypoint.R" in str(err.value)
    assert "git add" in str(err.value)


@pytest.mark.parametrize(
    ("include", "words"),
    [
        (["data/missing.rds"], "no such file or directory"),
        (["../origin"], "expected a path inside the app's directory"),
        (["/etc/passwd"], "expected a path inside the app's directory"),
        ([".Renviron"], ".Renviron is never packed"),
        (["data/small.csv", "data/small.csv"], "listed twice"),
        (["escape"], "leads outside"),
    ],
)
def test_bad_include_names_the_key(origin: Path, tmp_path: Path, include: list[str], words: str) -> None:
    app = clone(origin, tmp_path / "work")
    (app / "escape").symlink_to(tmp_path)
    with pytest.raises(ConfigError) as err:
        run_program(_config(app, include=include))
    assert "plumber-hosting:apps[0].include" in str(err.value) and words in str(err.value), str(err.value)
