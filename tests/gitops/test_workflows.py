"""The GitOps workflows keep the shape docs/gitops.md promises, and the
shellcheck pass that stands in for actionlint's finds what it should."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
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


REQUIREMENTS = ROOT / "requirements.txt"
SCRIPTS = ROOT / ".github" / "scripts"
DOCS = ROOT / "docs" / "gitops.md"
EXISTS = "steps.stack.outputs.exists == 'true'"


def _pulumi_pin() -> str:
    """The CLI version CI runs: the one `make pulumi` builds (toolchain/build.sh), never older than the SDK."""
    match = re.search(r"^version=v(\S+)", (ROOT / "toolchain" / "build.sh").read_text(), re.MULTILINE)
    assert match, "toolchain/build.sh pins the CLI"
    sdk = re.search(r"^pulumi==(\S+)$", REQUIREMENTS.read_text(), re.MULTILINE)
    assert sdk, "requirements.txt pins pulumi"
    cli = tuple(int(x) for x in match.group(1).split("."))
    assert tuple(int(x) for x in sdk.group(1).split(".")) <= cli, "a CLI older than the SDK is not supported"
    return match.group(1)


def _pulumi_step(job: dict[str, Any], command: str) -> dict[str, Any]:
    steps = [s for s in job["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@")
             and s.get("with", {}).get("command") == command]  # fmt: skip
    assert len(steps) == 1, f"one pulumi/actions step with command {command}"
    return steps[0]


def _index(job: dict[str, Any], pred: Any) -> int:
    found = [i for i, s in enumerate(job["steps"]) if pred(s)]
    assert len(found) == 1, found
    return found[0]


def _runs(script: str) -> Any:
    return lambda s: script in str(s.get("run", ""))


def _deploy_jobs() -> list[dict[str, Any]]:
    return [_workflow("preview.yml")["jobs"]["preview"], _workflow("up.yml")["jobs"]["up"]]


def test_preview_runs_on_pull_requests_with_policy_and_comment() -> None:
    wf = _workflow("preview.yml")
    assert "pull_request" in wf["on"]
    job = wf["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.changes.outputs.stacks) }}"
    assert job["permissions"]["pull-requests"] == "write"
    pulumi = _pulumi_step(job, "preview")["with"]
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
    assert _pulumi_step(job, "up")["with"]["policyPacks"] == "policy"


# --- point 3: one always-run gate check whose result is the preview outcome --------


def test_gate_job_always_runs_after_changes_and_every_preview() -> None:
    jobs = _workflow("preview.yml")["jobs"]
    gate = jobs["gate"]
    assert gate["name"] == "preview gate"
    assert set(gate["needs"]) == {"changes", "preview"}
    assert gate["if"] == "always()"  # a skipped check cannot be required
    assert "if" not in jobs["changes"]
    step = gate["steps"][_index(gate, _runs("preview-gate.sh"))]
    assert step["env"] == {
        "CHANGES": "${{ needs.changes.result }}",
        "ANY": "${{ needs.changes.outputs.any }}",
        "STACKS": "${{ needs.changes.outputs.stacks }}",
        "PREVIEW": "${{ needs.preview.result }}",
        "FORK": "${{ github.event.pull_request.head.repo.full_name != github.repository }}",
    }
    # the preview legs skip forks; the gate is what reports it
    assert "github.event.pull_request.head.repo.full_name == github.repository" in jobs["preview"]["if"]


@pytest.mark.parametrize(
    ("changes", "any_", "fork", "preview", "code", "says"),
    [
        ("success", "true", "false", "success", 0, "succeeded"),
        ("success", "false", "false", "skipped", 0, "touches no stack"),
        ("success", "false", "true", "skipped", 0, "touches no stack"),  # a fork's docs change
        ("success", "true", "false", "failure", 1, "ended 'failure'"),
        ("success", "true", "false", "cancelled", 1, "ended 'cancelled'"),
        ("success", "true", "false", "skipped", 1, "ended 'skipped'"),
        ("success", "true", "true", "skipped", 1, "NOT previewed"),  # visible, not a silent success
        ("failure", "", "false", "skipped", 1, "changed-stacks job ended 'failure'"),
        ("cancelled", "", "false", "skipped", 1, "ended 'cancelled'"),
    ],
)
def test_preview_gate_outcome(changes: str, any_: str, fork: str, preview: str, code: int, says: str,
                              tmp_path: Path) -> None:  # fmt: skip
    summary = tmp_path / "summary.md"
    env = {"PATH": "/usr/bin:/bin", "CHANGES": changes, "ANY": any_, "FORK": fork, "PREVIEW": preview,
           "STACKS": '["dev","prod"]', "GITHUB_STEP_SUMMARY": str(summary)}  # fmt: skip
    proc = subprocess.run(["bash", str(SCRIPTS / "preview-gate.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert says in proc.stdout and says in summary.read_text()
    if code:
        assert proc.stdout.startswith("::error title=preview gate::")


def test_docs_name_the_gate_as_the_required_check() -> None:
    text = DOCS.read_text()
    assert "`preview gate`" in text
    assert "require the `test` and `preview` checks" not in text


# --- point 5: what runs is pinned; no silent fallback to a file backend ------------


@pytest.mark.parametrize("name", ["preview.yml", "up.yml", "test.yml"])
def test_pulumi_action_is_v7_and_cli_pinned_to_the_toolchain(name: str) -> None:
    pin = _pulumi_pin()
    for job in _workflow(name)["jobs"].values():
        for step in job["steps"]:
            uses = str(step.get("uses", ""))
            if uses.startswith("pulumi/actions"):
                assert uses == "pulumi/actions@v7"
                assert str(step["with"]["pulumi-version"]) == pin


def _touches_pulumi(step: dict[str, Any]) -> bool:
    run = str(step.get("run", ""))
    return str(step.get("uses", "")).startswith("pulumi/actions") or any(
        x in run for x in ("stack-exists.sh", "use-ssh-key.sh", "pulumi ")
    )


def test_backend_guard_runs_before_any_pulumi_step() -> None:
    for job in _deploy_jobs():
        assert job["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL || secrets.PULUMI_BACKEND_URL }}"
        guard = _index(job, _runs("check-backend.sh"))
        assert "if" not in job["steps"][guard]
        assert guard < min(i for i, s in enumerate(job["steps"]) if _touches_pulumi(s))


@pytest.mark.parametrize(
    ("url", "code"),
    [("", 1), ("  ", 1), ("file://~/.pulumi-plumber-hosting", 1),
     ("s3://b?endpoint=https://fra1.digitaloceanspaces.com&region=us-east-1", 0)],
)
def test_check_backend(url: str, code: int) -> None:
    env = {"PATH": "/usr/bin:/bin", "PULUMI_BACKEND_URL": url}
    proc = subprocess.run(["bash", str(SCRIPTS / "check-backend.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == code, proc.stdout
    assert "digitaloceanspaces" not in proc.stdout  # the URL may be a secret: never printed
    if code:
        assert "::error" in proc.stdout


# --- point 2: every stack file is created by a documented step, or skipped clearly --


def _stack_files() -> list[str]:
    names = [p.name[len("Pulumi."):-len(".yaml")] for p in (ROOT / "stacks").glob("Pulumi.*.yaml")]
    return sorted(n for n in names if n != "local")


def test_every_stack_file_has_an_init_step_in_the_docs() -> None:
    assert _stack_files(), "no stack files?"
    text = DOCS.read_text()
    for stack in _stack_files():
        assert re.search(rf"^pulumi stack init {re.escape(stack)} +--secrets-provider passphrase$", text, re.MULTILINE), (
            f"docs/gitops.md has no `pulumi stack init {stack}` step for stacks/Pulumi.{stack}.yaml"
        )


def test_stack_is_checked_before_it_is_used() -> None:
    for job in _deploy_jobs():
        check = _index(job, _runs("stack-exists.sh"))
        assert job["steps"][check]["id"] == "stack"
        install = _index(job, lambda s: str(s.get("uses", "")).startswith("pulumi/actions") and "command" not in s["with"])
        assert install < check
        later = job["steps"][check + 1 :]
        assert later
        for step in later:
            cond = str(step.get("if", ""))
            assert EXISTS in cond or cond.startswith(("failure()", "always()")), step


def _fake_pulumi(tmp_path: Path, stderr: str, code: int) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/calls\necho \"{stderr}\" >&2\nexit {code}\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "STACK": "scale", "GITHUB_OUTPUT": str(tmp_path / "out"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary")}  # fmt: skip


@pytest.mark.parametrize(
    ("stderr", "code", "exit_code", "exists"),
    [
        ("", 0, 0, "true"),
        ("error: no stack named 'organization/plumber-hosting/scale' found", 255, 0, "false"),
        ("error: could not read bucket: AccessDenied", 255, 1, None),
    ],
)
def test_stack_exists(tmp_path: Path, stderr: str, code: int, exit_code: int, exists: str | None) -> None:
    env = _fake_pulumi(tmp_path, stderr, code)
    proc = subprocess.run(["bash", str(SCRIPTS / "stack-exists.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == exit_code, proc.stdout + proc.stderr
    assert (tmp_path / "calls").read_text().split() == ["stack", "select", "scale", "--non-interactive"]
    out = (tmp_path / "out").read_text() if (tmp_path / "out").exists() else ""
    assert out == (f"exists={exists}\n" if exists else "")
    if exists == "false":
        assert proc.stdout.startswith("::warning title=stack scale skipped::")
        assert "pulumi stack init scale --secrets-provider passphrase" in (tmp_path / "summary").read_text()
    if exit_code:
        assert "AccessDenied" in proc.stderr


# --- point 4: policies run before `up` changes anything ------------------------------


def test_up_previews_with_the_policy_pack_before_it_updates() -> None:
    job = _workflow("up.yml")["jobs"]["up"]
    preview, up = _pulumi_step(job, "preview"), _pulumi_step(job, "up")
    assert preview["with"]["policyPacks"] == "policy" and preview["with"]["stack-name"] == "${{ matrix.stack }}"
    assert job["steps"].index(preview) < job["steps"].index(up)
    # nothing lets the job go on after a failed preview
    for step in job["steps"][job["steps"].index(preview) : job["steps"].index(up) + 1]:
        assert "continue-on-error" not in step and "always()" not in str(step.get("if", ""))


# --- point 1: the deploy VPN wraps `pulumi up` and is always taken down ---------------


def test_up_connects_the_deploy_vpn_around_pulumi_up() -> None:
    job = _workflow("up.yml")["jobs"]["up"]
    steps = job["steps"]
    vpn_up = _index(job, _runs("deploy-vpn.sh up"))
    vpn_down = _index(job, _runs("deploy-vpn.sh down"))
    up = steps.index(_pulumi_step(job, "up"))
    preview = steps.index(_pulumi_step(job, "preview"))
    assert preview < vpn_up < up < vpn_down == len(steps) - 1
    assert steps[vpn_up]["id"] == "vpn"
    assert steps[vpn_up]["env"] == {"WG_CONFIG": "${{ secrets.WG_CONFIG }}"}
    assert "--preserve-env=WG_CONFIG" in steps[vpn_up]["run"] and steps[vpn_up]["run"].startswith("sudo ")
    assert steps[vpn_down]["if"] == "always() && steps.vpn.outcome != 'skipped'"
    assert "WG_CONFIG" not in str(steps[vpn_down])


def test_deploy_vpn_without_config_is_a_visible_no_op(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path), "WG_CONFIG": ""}
    proc = subprocess.run(["bash", str(SCRIPTS / "deploy-vpn.sh"), "up"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("::notice title=no deploy VPN::")
    assert not (tmp_path / "plumber-vpn").exists()
    bad = subprocess.run(["bash", str(SCRIPTS / "deploy-vpn.sh"), "sideways"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2


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
