"""make mutations: break one promise at a time and show which fast test catches it.

    python -m tests.mutations            # every mutation, the tests aimed at it
    python -m tests.mutations --full     # every mutation against the whole fast tiers (minutes)
    python -m tests.mutations -k hsts    # only mutations whose name contains "hsts"

Each mutation is a small text substitution in one file of the program
(a template, a component, the policy pack's input). It is applied to a fresh
copy of the repository in a temporary directory (the working tree is never
touched, so an interrupted run leaves nothing behind but that directory, which
is removed on the way out), and the fast-tier tests aimed at it run there
(unit, static, policy: never the end-to-end tier). A substitution whose text is
not found in the file is an error, not a skip: the mutation list must follow the
code. The same tests first run on an unmutated copy and must pass there.
The table shows, per mutation, the first test that failed and the seconds
it took; a mutation no test catches makes the run fail.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAST_TIERS = ["tests/unit", "tests/static", "tests/policy", "tests/gitops"]
COPY_IGNORE = shutil.ignore_patterns(".git", ".lab", ".pytest_cache", "__pycache__", "*.pyc", "venv", ".venv")

DEPLOY = "templates/scripts/deploy-app.sh.j2"
LOCATION = "templates/etc/nginx/plumber-hosting/locations/api.conf.j2"
UPSTREAM = "templates/etc/nginx/plumber-hosting/upstreams/api.conf.j2"
UNIT = "templates/etc/systemd/system/plumber-api@.service.j2"
SITE = "templates/etc/nginx/sites-available/plumber-hosting.j2"
PROMISES = "tests/unit/test_promises.py"
NGINX = "tests/static/test_nginx_behaviour.py"
EXPOSURE = "tests/static/test_rendered_files.py::test_units_are_sandboxed"


@dataclass(frozen=True)
class Mutation:
    name: str  # what a user would see break
    path: str  # file in the repository
    old: str  # exact text, must occur in the file
    new: str
    tests: tuple[str, ...]  # the fast tests aimed at it (pytest node ids or files)
    count: int = 1  # how many times `old` must occur (all are replaced)


MUTATIONS: list[Mutation] = [
    Mutation("HSTS sent on a plain-HTTP stack", "templates/etc/nginx/plumber-hosting/security-headers.conf.j2",
             "{% if tls %}\nadd_header Strict-Transport-Security", "{% if true %}\nadd_header Strict-Transport-Security",
             (f"{PROMISES}::test_no_hsts_without_https", f"{NGINX}::test_no_hsts_without_https")),
    Mutation("Server output admin_cidrs renamed (policy reads it)", "components/server.py",
             '"admin_cidrs": spec.admin_cidrs,', '"admin_cidr_list": spec.admin_cidrs,',
             ("tests/policy/test_policy_on_stacks.py",)),
    Mutation("worker unit without ProtectSystem=strict", UNIT, "ProtectSystem=strict\n", "",
             (f"{PROMISES}::test_worker_unit_is_unprivileged_and_read_only", EXPOSURE)),
    Mutation("worker unit runs as root", UNIT, "User=plumber\nGroup=plumber\n", "",
             (f"{PROMISES}::test_worker_unit_is_unprivileged_and_read_only", EXPOSURE)),
    # the same two, against the static tier's exposure score alone (systemd-analyze security)
    Mutation("worker unit without ProtectSystem=strict (exposure score)", UNIT, "ProtectSystem=strict\n", "",
             (EXPOSURE,)),
    Mutation("worker unit runs as root (exposure score)", UNIT, "User=plumber\nGroup=plumber\n", "", (EXPOSURE,)),
    Mutation("forward_root ignored", SITE, "{% if forward_path %}", "{% if false %}",
             (f"{PROMISES}::test_forward_root_redirects_to_the_app", f"{NGINX}::test_forward_root")),
    Mutation("forward_root redirects to / (a loop)", SITE, "return 302 {{ forward_path }}/;", "return 302 /;",
             (f"{PROMISES}::test_forward_root_redirects_to_the_app", f"{NGINX}::test_forward_root")),
    Mutation("ufw ignores admin_cidrs", "components/provision.py", "ufw_rules=ufw_rules(spec.admin_cidrs),",
             'ufw_rules=ufw_rules(["0.0.0.0/0"]),', (f"{PROMISES}::test_ufw_takes_ssh_only_from_admin_cidrs",)),
    Mutation("allow_cidrs lets every address in", UPSTREAM,
             "geo ${{ var }}_allowed {\n    default 0;", "geo ${{ var }}_allowed {\n    default 1;",
             (f"{PROMISES}::test_allow_cidrs_lets_in_only_the_listed_networks", f"{NGINX}::test_order_403_401_429")),
    Mutation("docs served for every app", UNIT, '{{ "true" if docs else "false" }}', "true",
             (f"{PROMISES}::test_docs_only_for_apps_that_ask",)),
    Mutation("rate limit answers 503, not 429", LOCATION, "    limit_req_status 429;\n", "",
             (f"{PROMISES}::test_rate_limit_answers_429", f"{NGINX}::test_order_403_401_429")),
    Mutation("health gate accepts a 5xx", DEPLOY, 'case "$code" in 2??) return 0 ;; esac',
             'case "$code" in 2?? | 5??) return 0 ;; esac',
             (f"{PROMISES}::test_health_gate_with_a_health_path_accepts_only_2xx",)),
    Mutation("health gate (no health_path) accepts a 5xx", DEPLOY, 'case "$code" in 000 | 5??) ;; *) return 0 ;; esac',
             'case "$code" in 000) ;; *) return 0 ;; esac',
             (f"{PROMISES}::test_health_gate_without_a_health_path_refuses_5xx_and_no_answer",)),
    Mutation("keep_releases ignored", DEPLOY, "KEEP_RELEASES={{ keep_releases }}", "KEEP_RELEASES=3",
             (f"{PROMISES}::test_keep_releases_keeps_that_many",)),
    Mutation("removing an app leaves its env file", "templates/scripts/remove-app.sh.j2",
             'rm -f "/etc/plumber-hosting/env/$APP.env"\n', "",
             (f"{PROMISES}::test_removing_an_app_removes_everything_its_deploy_wrote",)),
    Mutation("a secret base64-encoded into a command's plain text", "components/app.py",
             "        keep_releases=app.keep_releases,\n",
             '        keep_releases=f"{app.keep_releases}  # "'
             ' + __import__("base64").b64encode(env_file(app).encode()).decode(),\n',
             (f"{PROMISES}::test_secrets_are_in_no_plain_input_even_encoded",)),
    Mutation("a secret gzipped and base64-encoded into a command's plain text", "components/app.py",
             "        keep_releases=app.keep_releases,\n",
             '        keep_releases=f"{app.keep_releases}  # "'
             ' + __import__("base64").b64encode(__import__("gzip").compress(env_file(app).encode())).decode(),\n',
             (f"{PROMISES}::test_secrets_are_in_no_plain_input_even_encoded",)),
    # README claims (issue 16, point 3)
    Mutation("scripts on one server no longer take the lock", "templates/scripts/lib.sh.j2",
             "if ! flock -n 9; then", "if false; then",
             ("tests/unit/test_readme_claims.py::test_the_lock_serialises_two_scripts",)),
    Mutation("certificate renewal does not reload nginx",
             "templates/etc/letsencrypt/renewal-hooks/deploy/plumber-hosting-reload-nginx.j2",
             "systemctl reload nginx\n", "", ("tests/unit/test_readme_claims.py::test_renewal_hook_reloads_nginx",)),
    Mutation("Posit R fetched for the wrong Ubuntu release", "templates/scripts/provision.sh.j2",
             'platform="ubuntu-${VERSION_ID//./}"', 'platform="ubuntu-${VERSION_ID}"',
             ("tests/unit/test_readme_claims.py::test_posit_r_is_downloaded_for_the_server_s_release",)),
    Mutation("swap file not kept across reboots", "templates/scripts/provision.sh.j2",
             ">>/etc/fstab", ">/dev/null",
             ("tests/unit/test_readme_claims.py::test_swap_file_is_created_and_kept",)),
]


@dataclass
class Outcome:
    mutation: Mutation
    caught_by: str | None
    seconds: float
    output: str


class MutationError(RuntimeError):
    pass


def apply(m: Mutation, tree: Path) -> None:
    path = tree / m.path
    if not path.is_file():
        raise MutationError(f"{m.name}: {m.path} does not exist")
    text = path.read_text()
    found = text.count(m.old)
    if found != m.count:
        raise MutationError(f"{m.name}: expected {m.count} occurrence(s) of {m.old!r} in {m.path}, found {found}; "
                            "update the mutation to the current code")
    path.write_text(text.replace(m.old, m.new))


def _first_failure(output: str) -> str | None:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" ", 1)[1].split(" - ")[0]
    return None


def _pytest(python: str, tree: Path, targets: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-rfE", *targets],
        cwd=tree, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def baseline(chosen: list[Mutation], python: str, full: bool, base: Path, root: Path) -> tuple[bool, float, str]:
    """The same tests on the unmutated copy must pass, or a "catch" would mean nothing."""
    tree = Path(tempfile.mkdtemp(prefix="baseline-", dir=base))
    try:
        shutil.copytree(root, tree, ignore=COPY_IGNORE, dirs_exist_ok=True)
        targets = FAST_TIERS if full else sorted({t for m in chosen for t in m.tests})
        started = time.monotonic()
        proc = _pytest(python, tree, targets)
        return proc.returncode == 0, time.monotonic() - started, proc.stdout + proc.stderr
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def run_one(m: Mutation, python: str, full: bool, base: Path, root: Path = ROOT) -> Outcome:
    tree = Path(tempfile.mkdtemp(prefix="mut-", dir=base))
    try:
        shutil.copytree(root, tree, ignore=COPY_IGNORE, dirs_exist_ok=True)
        apply(m, tree)
        targets = FAST_TIERS if full else list(m.tests)
        started = time.monotonic()
        proc = _pytest(python, tree, targets)
        seconds = time.monotonic() - started
        output = proc.stdout + proc.stderr
        caught = _first_failure(output) if proc.returncode != 0 else None
        if proc.returncode not in (0, 1):  # usage error, collection error, interrupted: not a catch
            caught = None
            output = f"pytest exited {proc.returncode}\n{output}"
        return Outcome(m, caught, seconds, output)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="run the whole fast tiers for each mutation")
    parser.add_argument("-k", default="", help="only mutations whose name contains this")
    parser.add_argument("-j", type=int, default=2, help="mutations at a time (default 2)")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--check", action="store_true", help="only check that every substitution applies")
    parser.add_argument("--root", type=Path, default=ROOT, help="the tree to mutate (a copy of it; default: this one)")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()

    chosen = [m for m in MUTATIONS if args.k.lower() in m.name.lower()]
    if not chosen:
        parser.error(f"no mutation matches {args.k!r}")
    # Every substitution is checked against the current code before anything runs.
    with tempfile.TemporaryDirectory(prefix="mutations-") as base:
        check = Path(base) / "check"
        shutil.copytree(root, check, ignore=COPY_IGNORE)
        problems = []
        for m in chosen:
            try:
                apply(m, check)
            except MutationError as e:
                problems.append(str(e))
            if (root / m.path).exists():
                shutil.copy2(root / m.path, check / m.path)
        if problems:
            print("mutations that no longer apply:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 2
        shutil.rmtree(check)
        if args.check:
            print(f"all {len(chosen)} mutations apply to {root}")
            return 0

        started = time.monotonic()
        ok, base_seconds, output = baseline(chosen, args.python, args.full, Path(base), root)
        if not ok:
            print(f"{output[-4000:]}\nthe tests fail without any mutation: fix that first", file=sys.stderr)
            return 2
        print(f"without a mutation the same tests pass ({base_seconds:.1f} s)")
        with ThreadPoolExecutor(max_workers=max(1, args.j)) as pool:
            outcomes = list(pool.map(lambda m: run_one(m, args.python, args.full, Path(base), root), chosen))
        total = time.monotonic() - started

    width = max(len(o.mutation.name) for o in outcomes)
    print(f"\n| {'mutation'.ljust(width)} | caught by | s |")
    print(f"|{'-' * (width + 2)}|---|---:|")
    for o in outcomes:
        print(f"| {o.mutation.name.ljust(width)} | {o.caught_by or '**NOT CAUGHT**'} | {o.seconds:.1f} |")
    missed = [o for o in outcomes if o.caught_by is None]
    busy = sum(o.seconds for o in outcomes) + base_seconds
    print(f"\n{len(outcomes) - len(missed)}/{len(outcomes)} caught; tests ran {busy:.1f} s in all (baseline included), "
          f"{total:.1f} s wall ({args.j} at a time){' against the whole fast tiers' if args.full else ''}")
    for o in missed:
        print(f"\n--- {o.mutation.name}: not caught; pytest said:\n{o.output[-3000:]}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
