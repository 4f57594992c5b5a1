#!/usr/bin/env python3
"""Work out which Pulumi stacks a change touches, for the GitOps workflows.

Rules (the same for the pull-request preview and the push-to-main update):

* a change to ``stacks/Pulumi.<stack>.yaml`` selects ``<stack>``, if that file
  still exists (a deleted stack file has nothing left to preview or deploy);
* a change to the program -- ``__main__.py``, ``Pulumi.yaml``,
  ``requirements.txt``, ``components/**``, ``templates/**`` -- or to the policy
  pack (``policy/**``) selects every stack;
* the ``local`` stack is never selected: it lives in one person's local file
  backend, which CI cannot reach.

The result is printed as a JSON list (usable as a job matrix), and, when
``GITHUB_OUTPUT`` is set, written there as ``stacks=<json>`` and
``any=true|false``.

Usage::

    changed-stacks.py --base <sha> --head <sha>   # files from git diff base...head
    changed-stacks.py --files a.py stacks/Pulumi.dev.yaml
    changed-stacks.py --all                       # every deployable stack
    changed-stacks.py --only prod,staging         # named stacks (validated)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

STACKS_DIR = "stacks"
EXCLUDED_STACKS: frozenset[str] = frozenset({"local"})
PROGRAM_FILES: frozenset[str] = frozenset({"__main__.py", "Pulumi.yaml", "requirements.txt"})
PROGRAM_DIRS: tuple[str, ...] = ("components/", "templates/", "policy/")
NULL_SHA = re.compile(r"^0+$")
_STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>[^/]+)\.ya?ml$")


def stack_of(path: str, stacks_dir: str = STACKS_DIR) -> str | None:
    """Return the stack name if ``path`` is a stack file in ``stacks_dir``."""
    prefix = stacks_dir.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    match = _STACK_FILE.match(path[len(prefix):])
    return match.group("stack") if match else None


def is_program_path(path: str) -> bool:
    """True if a change to ``path`` can change what every stack deploys."""
    return path in PROGRAM_FILES or path.startswith(PROGRAM_DIRS)


def available_stacks(root: Path, stacks_dir: str = STACKS_DIR) -> list[str]:
    """Every stack that has a stack file under ``root/stacks_dir``, sorted."""
    directory = root / stacks_dir
    if not directory.is_dir():
        return []
    names = set()
    for entry in directory.iterdir():
        name = stack_of(f"{stacks_dir}/{entry.name}", stacks_dir)
        if name is not None and entry.is_file():
            names.add(name)
    return sorted(names)


def select_stacks(
    changed: Iterable[str],
    available: Iterable[str],
    stacks_dir: str = STACKS_DIR,
    excluded: Iterable[str] = EXCLUDED_STACKS,
) -> list[str]:
    """Apply the rules in the module docstring to a list of changed paths."""
    present = set(available)
    skip = set(excluded)
    selected: set[str] = set()
    for raw in changed:
        path = raw.strip().removeprefix("./")
        if not path:
            continue
        if is_program_path(path):
            selected |= present
            continue
        name = stack_of(path, stacks_dir)
        if name is not None and name in present:
            selected.add(name)
    return sorted(selected - skip)


def git_changed_files(base: str, head: str, cwd: Path) -> list[str] | None:
    """Files changed between the merge base of ``base`` and ``head``, and ``head``.

    Returns None when the range cannot be computed (a null or unknown base,
    as on the first push of a branch), so the caller can fall back to all stacks.
    """
    if not base or NULL_SHA.match(base):
        return None
    for rev in (base, head):
        probe = subprocess.run(
            ["git", "cat-file", "-e", f"{rev}^{{commit}}"],
            cwd=cwd,
            capture_output=True,
            check=False,
        )
        if probe.returncode != 0:
            return None
    out = subprocess.run(
        ["git", "diff", "--name-only", "--no-renames", f"{base}...{head}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in out.stdout.splitlines() if line.strip()]


def write_github_output(stacks: Sequence[str], output_file: str | None) -> None:
    """Append ``stacks`` and ``any`` to the GitHub Actions step output file."""
    if not output_file:
        return
    with open(output_file, "a", encoding="utf-8") as handle:
        handle.write(f"stacks={json.dumps(list(stacks))}\n")
        handle.write(f"any={'true' if stacks else 'false'}\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--base", help="base commit (PR base or the commit before a push)")
    source.add_argument("--files", nargs="*", help="changed paths, instead of asking git")
    source.add_argument("--all", action="store_true", help="every deployable stack")
    source.add_argument("--only", help="comma-separated stack names to select")
    parser.add_argument("--head", default="HEAD", help="head commit (default HEAD)")
    parser.add_argument("--root", default=".", help="repository root (default .)")
    parser.add_argument("--stacks-dir", default=STACKS_DIR, help="stack file folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.root)
    present = available_stacks(root, args.stacks_dir)
    deployable = [s for s in present if s not in EXCLUDED_STACKS]

    if args.all:
        stacks = deployable
    elif args.only is not None:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in deployable]
        if unknown:
            print(
                f"unknown or excluded stack(s): {', '.join(unknown)}; "
                f"deployable stacks: {', '.join(deployable) or '(none)'}",
                file=sys.stderr,
            )
            return 2
        stacks = sorted(set(wanted))
    else:
        if args.files is not None:
            changed: list[str] | None = list(args.files)
        else:
            changed = git_changed_files(args.base, args.head, root)
        if changed is None:
            print("no usable base commit; selecting every stack", file=sys.stderr)
            stacks = deployable
        else:
            stacks = select_stacks(changed, present, args.stacks_dir)

    print(json.dumps(stacks))
    write_github_output(stacks, os.environ.get("GITHUB_OUTPUT"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
