"""What the program would put on a server, pulled out of its declared commands."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.program import ProgramRun

SCRIPT_RE = re.compile(r"<<'(PH_SCRIPT_\w+)'\n(.*)\n\1\n", re.S)
PUT_FILE_RE = re.compile(r"^if put_file (\S+) (\d+) (\S+) <<'(PH_EOF_\w+)'\n(.*?)\n\4$", re.S | re.M)
UPSTREAM_RE = re.compile(r"^cat >\"\$work/upstream\.(\w+)\" <<'(PH_EOF_\w+)'\n(.*?)\n\2$", re.S | re.M)


@dataclass
class Landed:
    files: dict[str, str] = field(default_factory=dict)  # path on the server -> content
    modes: dict[str, str] = field(default_factory=dict)
    scripts: dict[str, str] = field(default_factory=dict)  # "<resource> create|delete" -> bash
    upstreams: dict[str, str] = field(default_factory=dict)  # "<app>.<variant>" -> content


def script_of(command_text: str) -> str:
    m = SCRIPT_RE.search(command_text)
    assert m, "command text is not a wrapped script"
    return m.group(2) + "\n"


def landed(run: ProgramRun) -> Landed:
    out = Landed()
    for cmd in run.commands:
        if "@" in cmd.name:  # replicas >= 2 land what the first replica lands
            continue
        for op in ("create", "delete"):
            text = cmd.inputs.get(op)
            if not text:
                continue
            script = script_of(text)
            out.scripts[f"{cmd.name} {op}"] = script
            for path, mode, _owner, _delim, content in PUT_FILE_RE.findall(script):
                out.files[path] = content + "\n"
                out.modes[path] = mode
            app = cmd.name.removesuffix("-deploy")
            for variant, _delim, content in UPSTREAM_RE.findall(script):
                out.upstreams[f"{app}.{variant}"] = content + "\n"
    return out
