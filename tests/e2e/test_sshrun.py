"""The Go runner (tests/sshrun) behaves as pulumi-command v1.2.1 on a real sshd.

These are the facts the test engine relies on when it carries out the
program's commands, checked against a lab host's OpenSSH server. Sources:
provider/pkg/provider/remote/{commandOutputs,connection,copyController}.go at v1.2.1.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import sshrun
from tests.lab.lab import Lab

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def conn(lab: Lab) -> dict[str, Any]:
    h = lab.state.hosts[0]  # type: ignore[union-attr]
    return {"host": h.address, "port": h.ssh_port, "user": h.user,
            "privateKey": Path(h.key_path).read_text(), "dialErrorLimit": 30, "perDialTimeout": 15}


def test_outputs_lose_one_trailing_newline(conn: dict[str, Any]) -> None:
    res = sshrun.run(conn, "printf 'a\\n\\n'; printf 'e\\n' >&2")
    assert res.ok, res.error
    assert (res.stdout, res.stderr) == ("a\n", "e")  # commandOutputs.go: strings.TrimSuffix(.., "\n")


def test_failure_reports_status_command_and_output(conn: dict[str, Any]) -> None:
    cmd = "echo out; echo err >&2; exit 3"
    res = sshrun.run(conn, cmd)
    # commandOutputs.go: fmt.Errorf("%w: running %q:\n%s", err, cmd, stdout+stderr)
    assert res.error is not None
    assert res.error.startswith(f'Process exited with status 3: running "{cmd}":\n')
    assert "out\n" in res.error and "err\n" in res.error


def test_previous_outputs_are_offered_as_env_and_refused_by_a_default_sshd(conn: dict[str, Any]) -> None:
    """Update offers PULUMI_COMMAND_STDOUT; Debian's sshd accepts only LANG/LC_*: a warning, the command runs."""
    res = sshrun.run(conn, "echo ${PULUMI_COMMAND_STDOUT-unset}", previous_stdout="old")
    assert res.ok, res.error
    assert res.stdout == "unset"
    assert res.warnings == ["Unable to set 'PULUMI_COMMAND_STDOUT'"]


def test_unread_stdin_over_the_window_is_eof_even_on_exit_0(conn: dict[str, Any], lab: Lab) -> None:
    """The fact issue 13 relies on: a script that ignores a large stdin can fail as ``EOF`` under
    pulumi-command (x/crypto ssh session.go Wait: the stdin copier's write error), while OpenSSH
    exits 0; a script that drains its stdin succeeds. It is a race (whether sshd has taken the
    rest of stdin when the command exits), so the unread case is tried 20 times: it must fail
    at least once, and only ever with EOF."""
    big = "x" * (3 * MIB)
    tries = [sshrun.run(conn, "true", stdin=big) for _ in range(20)]
    errors = [r.error for r in tries if r.error is not None]
    assert errors, "20 runs with 3 MiB of unread stdin all succeeded"
    assert all(e.startswith('EOF: running "true":') for e in errors), errors
    unread = next(r for r in tries if r.error is not None)
    drained = [sshrun.run(conn, "cat >/dev/null", stdin=big) for _ in range(5)]
    assert all(r.ok for r in drained), [r.error for r in drained]
    h = lab.state.hosts[0]  # type: ignore[union-attr]
    openssh = subprocess.run(
        ["ssh", "-i", h.key_path, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"{h.user}@{h.address}", "true"],
        input=big, capture_output=True, text=True, timeout=60)
    assert openssh.returncode == 0, openssh.stderr  # why the test engine must not use OpenSSH
    assert unread.error is not None
    print(f"unread 3 MiB stdin: {len(errors)} of 20 runs failed with {unread.error.splitlines()[0]!r}; "
          "drained: 5 of 5 ok")


def test_dial_retries_then_reports_the_attempts(conn: dict[str, Any]) -> None:
    closed = {**conn, "host": "127.0.0.1", "port": 1, "dialErrorLimit": 2}  # nothing listens there
    res = sshrun.run(closed, "true")
    # connection.go dialWithRetry: "after %d failed attempts: %w" with try = dials - 1
    assert res.error is not None and res.error.startswith("after 2 failed attempts: dial tcp"), res.error
    assert "connection refused" in res.error


def test_copy_to_remote_semantics(conn: dict[str, Any], tmp_path: Path) -> None:
    """copyController.go sftpCopy/copyTextContent: parents made, into-a-directory vs onto-a-path."""
    base = "/tmp/sshrun-copy"
    reset = sshrun.run(conn, f"rm -rf {base} && mkdir -p {base}/existing")
    assert reset.ok, reset.error
    src = tmp_path / "app"
    (src / "sub").mkdir(parents=True)
    (src / "plumber.R").write_text("# api\n")
    (src / "sub" / "data.csv").write_text("a,b\n")
    cases = [
        # text asset onto a new path: parents created
        (sshrun.copy_to_remote(conn, f"{base}/new/deep/env", text="K=v\n"), None),
        # file onto an existing directory: copied INTO it under its own name
        (sshrun.copy_to_remote(conn, f"{base}/existing", path=str(src / "plumber.R")), None),
        # directory (no trailing slash) onto a missing path: dest made, the directory goes inside it
        (sshrun.copy_to_remote(conn, f"{base}/rel", path=str(src)), None),
        # directory with a trailing slash onto an existing directory: its contents go there
        (sshrun.copy_to_remote(conn, f"{base}/existing", path=str(src) + "/"), None),
        # text asset onto a directory: refused
        (sshrun.copy_to_remote(conn, f"{base}/existing", text="x"), "is a directory"),
    ]
    for res, error in cases:
        if error is None:
            assert res.ok, res.error
        else:
            assert res.error is not None and error in res.error, res.error
    listing = sshrun.run(conn, f"cd {base} && find . -type f | sort && cat new/deep/env")
    assert listing.ok, listing.error
    assert listing.stdout.splitlines() == [
        "./existing/plumber.R",
        "./existing/sub/data.csv",
        "./new/deep/env",
        "./rel/app/plumber.R",
        "./rel/app/sub/data.csv",
        "K=v",
    ]
    assert sshrun.run(conn, f"rm -rf {shlex.quote(base)}").ok
