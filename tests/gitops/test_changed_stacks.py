"""Tests for .github/scripts/changed-stacks.py (which stacks a change touches)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".github" / "scripts" / "changed-stacks.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("changed_stacks", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["changed_stacks"] = module
    spec.loader.exec_module(module)
    return module


cs = _load()

AVAILABLE = ["dev", "local", "prod", "staging"]


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (["stacks/Pulumi.dev.yaml"], ["dev"]),
        (["stacks/Pulumi.prod.yaml", "stacks/Pulumi.staging.yaml"], ["prod", "staging"]),
        (["./stacks/Pulumi.prod.yaml"], ["prod"]),
        (["stacks/Pulumi.local.yaml"], []),
        (["stacks/Pulumi.gone.yaml"], []),  # deleted stack file: nothing to deploy
        (["stacks/README.md", "stacks/sub/Pulumi.dev.yaml"], []),
        (["README.md", "docs/gitops.md", ".github/workflows/up.yml", "tests/x.py"], []),
        (["__main__.py"], ["dev", "prod", "staging"]),
        (["components/server.py"], ["dev", "prod", "staging"]),
        (["templates/etc/nginx/site.conf.j2"], ["dev", "prod", "staging"]),
        (["requirements.txt"], ["dev", "prod", "staging"]),
        (["Pulumi.yaml"], ["dev", "prod", "staging"]),
        (["policy/rules.py"], ["dev", "prod", "staging"]),
        (["components/app.py", "stacks/Pulumi.local.yaml"], ["dev", "prod", "staging"]),
        ([], []),
        (["", "  "], []),
    ],
)
def test_select_stacks(changed: list[str], expected: list[str]) -> None:
    assert cs.select_stacks(changed, AVAILABLE) == expected


def test_program_prefixes_are_whole_directories() -> None:
    assert cs.select_stacks(["components_old.py", "templatesx/a"], AVAILABLE) == []


@pytest.mark.parametrize(
    ("path", "stack"),
    [
        ("stacks/Pulumi.prod.yaml", "prod"),
        ("stacks/Pulumi.prod-eu.yml", "prod-eu"),
        ("stacks/Pulumi.dev.v2.yaml", "dev.v2"),
        ("stacks/Pulumi.yaml", None),
        ("Pulumi.prod.yaml", None),
        ("stacks/other.yaml", None),
    ],
)
def test_stack_of(path: str, stack: str | None) -> None:
    assert cs.stack_of(path) == stack


def _repo(tmp_path: Path) -> Path:
    (tmp_path / "stacks").mkdir()
    for name in ("dev", "local", "prod"):
        (tmp_path / "stacks" / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    (tmp_path / "__main__.py").write_text("print('hi')\n")
    return tmp_path


def test_available_stacks(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    (root / "stacks" / "notes.txt").write_text("x")
    assert cs.available_stacks(root) == ["dev", "local", "prod"]
    assert cs.available_stacks(tmp_path / "missing") == []


def _run(root: Path, *args: str, output: Path | None = None) -> tuple[int, list[str], str]:
    env_output = {} if output is None else {"GITHUB_OUTPUT": str(output)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env_output},
        check=False,
    )
    stacks = json.loads(proc.stdout) if proc.returncode == 0 else []
    return proc.returncode, stacks, proc.stderr


def test_cli_files_and_github_output(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    output = tmp_path / "github_output"
    code, stacks, _ = _run(root, "--files", "stacks/Pulumi.prod.yaml", output=output)
    assert (code, stacks) == (0, ["prod"])
    assert output.read_text() == 'stacks=["prod"]\nany=true\n'

    output.unlink()
    code, stacks, _ = _run(root, "--files", "docs/gitops.md", output=output)
    assert (code, stacks) == (0, [])
    assert output.read_text() == "stacks=[]\nany=false\n"


def test_cli_all_and_only(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    assert _run(root, "--all")[:2] == (0, ["dev", "prod"])
    assert _run(root, "--only", "prod, dev")[:2] == (0, ["dev", "prod"])
    code, _, err = _run(root, "--only", "local")
    assert code == 2 and "local" in err
    code, _, err = _run(root, "--only", "nope")
    assert code == 2 and "nope" in err


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_cli_git_range(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "init")
    base = _git(root, "rev-parse", "HEAD")

    (root / "stacks" / "Pulumi.dev.yaml").write_text("config: {a: 1}\n")
    _git(root, "commit", "-q", "-am", "dev only")
    dev_head = _git(root, "rev-parse", "HEAD")
    assert _run(root, "--base", base, "--head", dev_head)[:2] == (0, ["dev"])

    (root / "__main__.py").write_text("print('changed')\n")
    _git(root, "commit", "-q", "-am", "program")
    head = _git(root, "rev-parse", "HEAD")
    assert _run(root, "--base", dev_head, "--head", head)[:2] == (0, ["dev", "prod"])

    # A branch's first push has an all-zero "before"; an unknown base falls back too.
    code, stacks, err = _run(root, "--base", "0" * 40, "--head", head)
    assert (code, stacks) == (0, ["dev", "prod"]) and "every stack" in err
    assert _run(root, "--base", "f" * 40, "--head", head)[:2] == (0, ["dev", "prod"])

    # Three-dot range: changes made on main since the branch point are not the PR's.
    _git(root, "checkout", "-q", "-b", "feature", dev_head)
    (root / "stacks" / "Pulumi.prod.yaml").write_text("config: {b: 2}\n")
    _git(root, "commit", "-q", "-am", "prod on a branch")
    feature = _git(root, "rev-parse", "HEAD")
    assert _run(root, "--base", head, "--head", feature)[:2] == (0, ["prod"])
