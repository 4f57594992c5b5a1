"""The GitOps workflows keep the shape docs/gitops.md promises, and the
shellcheck pass that stands in for actionlint's finds what it should."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sc = _load("shellcheck_run_steps", ROOT / ".github" / "scripts" / "shellcheck-run-steps.py")


def _workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # PyYAML reads the `on:` key as the boolean True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def _pulumi_step(job: dict[str, Any]) -> dict[str, Any]:
    steps = [s for s in job["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@") and "with" in s]
    assert len(steps) == 1
    return steps[0]["with"]


def test_preview_runs_on_pull_requests_with_policy_and_comment() -> None:
    wf = _workflow("preview.yml")
    assert "pull_request" in wf["on"]
    job = wf["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.changes.outputs.stacks) }}"
    assert job["permissions"]["pull-requests"] == "write"
    pulumi = _pulumi_step(job)
    assert pulumi["command"] == "preview"
    assert pulumi["policyPacks"] == "policy"
    assert pulumi["comment-on-pr"] is True
    assert pulumi["stack-name"] == "${{ matrix.stack }}"
    for name in (
        "DIGITALOCEAN_TOKEN",
        "PULUMI_CONFIG_PASSPHRASE",
        "PULUMI_BACKEND_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        assert name in job["env"]


def test_up_runs_on_main_per_stack_environment_one_at_a_time() -> None:
    wf = _workflow("up.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    job = wf["jobs"]["up"]
    assert job["environment"] == "${{ matrix.stack }}"
    assert "${{ matrix.stack }}" in job["concurrency"]["group"]
    assert job["concurrency"]["cancel-in-progress"] is False
    pulumi = _pulumi_step(job)
    assert pulumi["command"] == "up"
    assert pulumi["policyPacks"] == "policy"


def test_test_workflow_runs_ci_script() -> None:
    wf = _workflow("test.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    runs = [s.get("run", "") for s in wf["jobs"]["test"]["steps"]]
    assert any(r.startswith("sudo ") and r.endswith("bash .ci/run") for r in runs)
    # .ci/run is what runs actionlint.sh (if executable) and `make test`.
    assert (ROOT / ".github" / "scripts" / "actionlint.sh").stat().st_mode & 0o111


def test_sanitize_keeps_length_and_lines() -> None:
    script = 'echo "${{ github.sha }}"\nx=${{\n  matrix.a }}\n'
    clean = sc.sanitize(script)
    assert len(clean) == len(script)
    assert clean.count("\n") == script.count("\n")
    assert "${{" not in clean


WORKFLOW = """\
on: push
defaults:
  run:
    shell: bash
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo ok
      - name: block
        run: |
          echo "$HOME"
          echo $UNQUOTED
      - shell: pwsh
        run: Write-Host $x
"""


def test_run_scripts_positions() -> None:
    scripts = list(sc.run_scripts(WORKFLOW, "w.yml"))
    assert [(s.shell, s.first_line, s.column) for s in scripts] == [("bash", 9, 14), ("bash", 12, 11), ("pwsh", 15, 14)]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_finds_unquoted_variable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "w.yml"
    path.write_text(WORKFLOW)
    assert sc.main([str(path)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].endswith("[shellcheck]") and "SC2086" in out[0]
    assert ":13:16:" in out[0]  # the workflow file's line and column of $UNQUOTED


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean_on_project_workflows() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert files
    assert sc.main(files) == 0
