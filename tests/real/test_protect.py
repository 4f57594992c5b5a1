"""Protection as the real engine does it (README: "Protection and destroy").

The model program has the shape protection has in plumber-hosting: the server's droplet and
reserved IP carry ``protect`` (from ``plumber-hosting:protect``, default true), and the site and
app parts that run on it do not. Components stand in for the DigitalOcean and pulumi-command
resources: protection is checked by the engine on every resource alike
(pkg/resource/deploy/step.go ``DeleteStep.Apply``, step_generator.go for replacements), so the
messages and the order are the engine's own.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pulumi
import pytest
from pulumi import automation as auto

from tests.real.conftest import RealStack, toolchain_env

# The engine's words (pkg/resource/deploy/step.go deleteProtectedError.Error, v3.274.0), quoted by the README;
# the CLI indents the message's second line in its diagnostics.
DELETE_PROTECTED = re.compile(r"cannot be deleted\s+because it is protected")


class Part(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("plumber-hosting:test:Part", name, None, opts)
        self.register_outputs({})


def program() -> None:
    protect = pulumi.Config().get_bool("protect")
    protect = True if protect is None else protect
    server = Part("server")
    droplet = Part("server-droplet", pulumi.ResourceOptions(parent=server, protect=protect))
    Part("server-ip", pulumi.ResourceOptions(parent=server, protect=protect))
    site = Part("site", pulumi.ResourceOptions(depends_on=[droplet]))
    Part("hello", pulumi.ResourceOptions(depends_on=[site]))


def names(s: auto.Stack) -> set[str]:
    resources = s.export_stack().deployment.get("resources") or []
    return {r["urn"].rsplit("::", 1)[1] for r in resources if r["type"] != "pulumi:pulumi:Stack"}


def cli(rs: RealStack, pulumi_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI itself in the stack's project directory (destroy runs no program: no language host needed)."""
    ws = rs.stack.workspace
    env = {**toolchain_env(), **(ws.env_vars or {}), "PATH": f"{pulumi_bin}:/usr/bin:/bin",
           "PULUMI_HOME": str(ws.pulumi_home)}
    return subprocess.run(
        ["pulumi", *args, "--stack", rs.stack.name, "--non-interactive", "--color", "never"],
        cwd=ws.work_dir, env=env, capture_output=True, text=True, timeout=120,
    )


def test_a_protected_delete_does_not_stop_the_run(real_stack: Callable[..., RealStack]) -> None:
    """`destroy --skip-preview` (what the Automation API runs) deletes everything else first."""
    rs = real_stack(program)
    rs.stack.up(on_output=rs.log.append)
    assert names(rs.stack) == {"server", "server-droplet", "server-ip", "site", "hello"}
    with pytest.raises(auto.CommandError) as failed:
        rs.stack.destroy(on_output=rs.log.append)
    assert DELETE_PROTECTED.search(str(failed.value)), str(failed.value)[-2000:]
    # The unprotected parts that ran on the server are gone; the server and its protected parts stay.
    assert names(rs.stack) == {"server", "server-droplet", "server-ip"}


def test_the_cli_destroy_with_its_preview_deletes_nothing(
    real_stack: Callable[..., RealStack], pulumi_bin: Path
) -> None:
    """Plain `pulumi destroy --yes` previews first; the preview fails on the protected parts, nothing runs."""
    rs = real_stack(program)
    rs.stack.up(on_output=rs.log.append)
    done = cli(rs, pulumi_bin, "destroy", "--yes")
    assert done.returncode != 0
    assert DELETE_PROTECTED.search(done.stdout + done.stderr), (done.stdout + done.stderr)[-2000:]
    assert names(rs.stack) == {"server", "server-droplet", "server-ip", "site", "hello"}


def test_the_documented_procedure_destroys_a_protected_stack(real_stack: Callable[..., RealStack]) -> None:
    """README: `pulumi config set plumber-hosting:protect false`, `pulumi up` (writes the flag and changes
    nothing else), `pulumi destroy`."""
    rs = real_stack(program)
    rs.stack.up(on_output=rs.log.append)
    rs.stack.set_config("protect", auto.ConfigValue("false"))
    flag = rs.stack.up(on_output=rs.log.append)
    changes = {k: v for k, v in (flag.summary.resource_changes or {}).items() if k != "same"}
    assert changes == {}, f"unprotecting changed resources: {changes}"
    protected = [r for r in rs.stack.export_stack().deployment["resources"] if r.get("protect")]
    assert protected == [], json.dumps(protected)[:500]
    rs.stack.destroy(on_output=rs.log.append)
    assert names(rs.stack) == set()


def test_destroy_ignore_protect_in_one_command(real_stack: Callable[..., RealStack], pulumi_bin: Path) -> None:
    """README: `pulumi destroy --ignore-protect` (CLI >= the pinned one) removes a protected stack at once."""
    rs = real_stack(program)
    rs.stack.up(on_output=rs.log.append)
    done = cli(rs, pulumi_bin, "destroy", "--yes", "--ignore-protect")
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert names(rs.stack) == set()


def test_the_pinned_cli_is_the_one_that_runs(pulumi_bin: Path) -> None:
    build = (Path(__file__).resolve().parents[2] / "toolchain" / "build.sh").read_text()
    pinned = build.split("version=", 1)[1].split()[0]
    done = subprocess.run([str(pulumi_bin / "pulumi"), "version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == pinned


def test_the_readme_quotes_the_engines_own_words(real_stack: Callable[..., RealStack], pulumi_bin: Path) -> None:
    """Every message the README's "Protection and destroy" section quotes is what the engine prints
    (an earlier README quoted "unable to delete resource … as it is currently marked for protection",
    which the engine never says)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "## Protection and destroy" in readme
    assert "unable to delete resource" not in readme, "a message the engine never prints"
    section = readme.split("## Protection and destroy", 1)[1].split("\n## ", 1)[0]
    section = re.sub(r"```.*?```", "", section, flags=re.S)  # commands, not messages
    quoted = [q for q in re.findall(r"`([^`]+)`", section.replace("\n", " ")) if q.startswith(("resource ", "unable "))]
    assert quoted, "the section quotes the engine's messages"
    rs = real_stack(program)
    rs.stack.up(on_output=rs.log.append)
    printed = cli(rs, pulumi_bin, "destroy", "--yes")  # the delete message
    rs.stack.set_config("protect", auto.ConfigValue("true"))
    words = " ".join((printed.stdout + printed.stderr).replace("`", "").split())
    for q in quoted:
        if q.startswith("unable to replace"):
            continue  # a replacement needs a provider's diff; its text is step_generator.go's, checked below
        pattern = ".*?".join(re.escape(" ".join(part.split())) for part in q.split("…"))
        assert re.search(pattern, words), f"README quotes {q!r}; the engine printed:\n{words[-1500:]}"
    source = Path(
        subprocess.run(["bash", "-c", "ls -d /root/go/pkg/mod/github.com/pulumi/pulumi/pkg/v3@v3.274.0 2>/dev/null"],
                       capture_output=True, text=True).stdout.strip() or "/nonexistent"
    ) / "resource" / "deploy" / "step_generator.go"
    if source.exists():
        text = " ".join(source.read_text().split())
        for q in (q for q in quoted if q.startswith("unable to replace")):
            first = q.split("…")[0].split('"')[0].strip()
            assert f'"{first}' in text or first in text, q
