"""What the program would put on a server, pulled out of its declared commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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

def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: the static tier needs it (see Makefile deps)")
    return path


def nginx_prefix(tmp: Path, files: Landed, upstream_variant: str) -> Path:
    """The landed nginx files under tmp/root, an nginx.conf that includes them as the server's does."""
    root = tmp / "root"
    for path, content in files.files.items():
        if not path.startswith("/etc/nginx/"):
            continue
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(content.replace("/etc/nginx/", f"{root}/etc/nginx/").replace("/etc/letsencrypt/", f"{root}/etc/letsencrypt/").replace("/var/www/", f"{root}/var/www/"))
    for key, content in files.upstreams.items():
        app, variant = key.split(".")
        if variant != upstream_variant and f"{app}.{upstream_variant}" in files.upstreams:
            continue
        dest = root / "etc/nginx/plumber-hosting/upstreams" / f"{app}.conf"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(content)
    (root / "etc/nginx/sites-enabled").mkdir(parents=True, exist_ok=True)
    site = root / "etc/nginx/sites-available/plumber-hosting"
    (root / "etc/nginx/sites-enabled/plumber-hosting").symlink_to(site)
    live = root / "etc/letsencrypt/live/plumber-hosting"
    live.mkdir(parents=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
         "-keyout", str(live / "privkey.pem"), "-out", str(live / "fullchain.pem")],
        check=True, capture_output=True,
    )
    conf = tmp / "nginx.conf"
    conf.write_text(
        "load_module /usr/lib/nginx/modules/ngx_http_js_module.so;\n"  # libnginx-mod-http-js, as on the server
        f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {root}/etc/nginx/conf.d/*.conf;\n  include {root}/etc/nginx/sites-enabled/*;\n}}\n"
    )
    return conf
