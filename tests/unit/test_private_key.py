"""The same SSH private key from any source gives the same connection (issue 23 point 7, review D7).

pulumi-command's ``connection`` is a plain input of every Command and CopyToRemote: any byte
change is an update of each of them. A laptop's key file and the CI runner's (written by
.github/scripts/use-ssh-key.sh, which adds a newline) hold the same key, so they must give
byte-identical connection inputs, or alternating `up`s re-run every command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_KEY
from tests.program import ProgramRun, run_program
from tests.unit.test_config import existing_host

KEY = TEST_KEY.read_text()  # as ssh-keygen wrote it: one final newline

# (how the key reaches the program, its text)
VARIANTS: dict[str, tuple[str, str]] = {
    "laptop file (ssh-keygen's)": ("file", KEY),
    "CI file (use-ssh-key.sh adds a newline)": ("file", KEY + "\n"),
    "file with CRLF line ends": ("file", KEY.replace("\n", "\r\n")),
    "file with blank lines around": ("file", "\n" + KEY + "\n\n  \n"),
    "secret without the final newline": ("secret", KEY.rstrip("\n")),
    "secret as the file holds it": ("secret", KEY),
}


def _connections(run: ProgramRun) -> dict[str, Any]:
    return {r.name: r.inputs["connection"] for r in run.resources if "connection" in r.inputs}


def _run(kind: str, text: str, tmp_path: Path) -> ProgramRun:
    cfg = existing_host()
    if kind == "file":
        path = tmp_path / "id_ed25519"
        path.write_bytes(text.encode())
        cfg["ssh_private_key_file"] = str(path)
        return run_program(cfg)
    del cfg["ssh_private_key_file"]
    cfg["ssh_private_key"] = text
    return run_program(cfg, secret_keys=("ssh_private_key",))


def test_the_same_key_from_any_file_or_secret_gives_identical_connections(tmp_path: Path) -> None:
    runs = {name: _connections(_run(kind, text, tmp_path)) for name, (kind, text) in VARIANTS.items()}
    reference = runs["laptop file (ssh-keygen's)"]
    assert len(reference) >= 4  # provisioning, site, each app's upload and deploy
    for name, connections in runs.items():
        assert connections == reference, f"{name}: the connection differs, so every command would re-run"
    assert {c["privateKey"] for c in reference.values()} == {KEY}  # as ssh-keygen writes it


@pytest.mark.parametrize("name", list(VARIANTS))
def test_normalized_key_is_ssh_keygens_bytes(name: str) -> None:
    from components.config import normalize_private_key

    assert normalize_private_key(VARIANTS[name][1]) == KEY


def test_a_stale_ssh_agent_socket_stops_the_run_before_any_resource(tmp_path: Path) -> None:
    """pulumi-command dials SSH_AUTH_SOCK on every connection (connection_unix.go tryGetDefaultAgentSocket):
    one left over from a closed session fails every remote command, so the program says so first."""
    import socket

    from components.keys import agent_problem

    gone = tmp_path / "agent.1234"
    assert agent_problem({"SSH_AUTH_SOCK": str(gone)}) is not None
    dead = tmp_path / "agent.dead"  # the socket file is there, its agent is not
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))
    s.close()
    assert "no SSH agent answers" in (agent_problem({"SSH_AUTH_SOCK": str(dead)}) or "")
    live = tmp_path / "agent.live"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(live))
    server.listen(1)
    try:
        assert agent_problem({"SSH_AUTH_SOCK": str(live)}) is None
    finally:
        server.close()
    assert agent_problem({}) is None


def test_the_program_names_a_stale_agent_before_registering_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.config import ConfigError

    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.gone"))
    registered: list[str] = []
    with pytest.raises(ConfigError, match=r"SSH_AUTH_SOCK: names .*agent\.gone.*unset SSH_AUTH_SOCK"):
        run_program(existing_host(), stack="local", on_register=lambda d: registered.append(d.urn) or {})
    assert registered == []
