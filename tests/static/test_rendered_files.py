"""Every rendered file, checked by the real tool: nginx -t, systemd-analyze
verify, shellcheck, bash -n, R's parser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import local_overrides
from tests.e2e.catalogue import catalogue_config
from tests.program import ProgramRun, run_program, run_stack, stack_config
from tests.static.rendered import Landed, landed

pytestmark = pytest.mark.static

# A whole certificate: the config decodes acme_ca_cert (components/keys.py certificate_problem).
PEM = subprocess.run(
    ["openssl", "req", "-x509", "-newkey", "ed25519", "-nodes", "-subj", "/CN=private acme test CA", "-days", "1",
     "-keyout", "/dev/null"],
    capture_output=True, text=True, check=True,
).stdout


def _https_private_acme() -> ProgramRun:
    cfg: dict[str, Any] = {**stack_config("local"), **local_overrides()}
    cfg.update(
        domain="lab.test",
        hostname="api",
        manage_dns=False,
        https={"email": "ops@lab.test", "accept_tos": True, "acme_server": "https://10.213.8.1:14000/dir", "acme_ca_cert": PEM},
    )
    cfg["apps"] = [*cfg["apps"], {"name": "solo", "source": "examples/hello", "path": "/v1/solo", "workers": 1, "memory_max": "256M", "max_body": "1M", "timeout": 5}, {"name": "sticky-one", "source": "examples/hello", "workers": 3, "sticky": True},
                   {"name": "guarded", "source": "examples/hello", "workers": 2, "allow_cidrs": ["10.0.0.0/8", "2001:db8::/32"],
                    "auth": {"api_keys": ["k" * 24, "0123456789abcdef0123"]}, "rate_limit": {"rate": "10r/s", "burst": 5}},
                   {"name": "metered", "source": "examples/hello", "rate_limit": "600r/m"}]
    return run_program(cfg, stack="local")


def _catalogue() -> ProgramRun:
    """The catalogue: renv.lock, name@version pins, system packages."""
    return run_program(catalogue_config({**stack_config("local"), **local_overrides()}), stack="local")


VARIANTS = {
    "catalogue": _catalogue,
    "dev": lambda: run_stack("dev"),
    "prod": lambda: run_stack("prod"),
    "scale": lambda: run_stack("scale"),
    "local": lambda: run_stack("local", local_overrides()),
    # r_version from Posit's prebuilt R, on Ubuntu: its install script through shellcheck and bash -n
    "posit-r-ubuntu": lambda: run_stack("dev", {"r_version": "4.4.2", "image": "ubuntu-24-04-x64"}),
    "https-private-acme": _https_private_acme,
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def files(request: pytest.FixtureRequest) -> Landed:
    return landed(VARIANTS[request.param]())


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: the static tier needs it (see Makefile deps)")
    return path


def test_expected_files_land(files: Landed) -> None:
    paths = set(files.files)
    assert "/etc/nginx/conf.d/plumber-hosting.conf" in paths
    assert "/etc/nginx/sites-available/plumber-hosting" in paths
    assert "/usr/local/lib/plumber-hosting/run-api.R" in paths
    assert any(p.startswith("/etc/systemd/system/plumber-") and p.endswith("@.service") for p in paths)
    assert any(p.startswith("/etc/nginx/plumber-hosting/locations/") for p in paths)
    assert files.upstreams


def _nginx_prefix(tmp: Path, files: Landed, upstream_variant: str) -> Path:
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


def test_nginx_accepts_the_whole_configuration(files: Landed, tmp_path: Path) -> None:
    nginx = _need("nginx")
    conf = _nginx_prefix(tmp_path, files, "a")
    res = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "syntax is ok" in res.stderr


def test_nginx_rejects_a_broken_location(files: Landed, tmp_path: Path) -> None:
    """The check above can fail: a broken snippet is caught."""
    nginx = _need("nginx")
    broken = Landed(files=dict(files.files), upstreams=dict(files.upstreams))
    loc = next(p for p in broken.files if "/locations/" in p)
    broken.files[loc] = broken.files[loc].replace("proxy_pass", "proxy_passs")
    conf = _nginx_prefix(tmp_path, broken, "a")
    res = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert res.returncode != 0


def _unit_instance(tmp_path: Path, path: str, content: str) -> Path:
    """The unit written under tmp_path; for a template, an instance of it (port 10000)."""
    name = Path(path).name
    (tmp_path / name).write_text(content)
    if "@." not in name:
        return tmp_path / name
    instance = tmp_path / name.replace("@.service", "@10000.service")
    instance.symlink_to(tmp_path / name)
    return instance


def test_units_pass_systemd_analyze_verify(files: Landed, tmp_path: Path) -> None:
    analyze = _need("systemd-analyze")
    units = {p: c for p, c in files.files.items() if p.endswith(".service")}
    assert units
    for path, content in units.items():
        # Posit's R (r_version) is not installed on the build machine: verify against the distro's Rscript.
        content = re.sub(r"/opt/R/[0-9.]+/bin/Rscript", "/usr/bin/Rscript", content)
        instance = _unit_instance(tmp_path, path, content)
        res = subprocess.run([analyze, "verify", str(instance)], capture_output=True, text=True, cwd=tmp_path)
        assert res.returncode == 0, f"{path}: {res.stdout}{res.stderr}"
        assert "Unknown key" not in res.stderr and "Unknown lvalue" not in res.stderr, res.stderr


# `systemd-analyze security --offline` exposure (0-10) each unit scores today (systemd 252, Debian 12).
# The test fails a unit that scores above it plus 0.1: any change that adds 0.2 of exposure (the
# worker without ProtectSystem=strict scores 1.6, running as root 1.8) fails; a better score passes.
EXPOSURE = {"plumber-api@": 1.4, "plumber-hosting-healthz": 1.3}
EXPOSURE_MARGIN = 0.1


def _unit_kind(path: str) -> str:
    name = Path(path).name
    return "plumber-api@" if name.endswith("@.service") else name.removesuffix(".service")


def test_units_are_sandboxed(files: Landed, tmp_path: Path) -> None:
    analyze = _need("systemd-analyze")
    units = [p for p in files.files if p.endswith(".service") and Path(p).name.startswith("plumber-")]
    assert any(p.endswith("/plumber-hosting-healthz.service") for p in units)
    for path in units:
        instance = _unit_instance(tmp_path, path, files.files[path])
        limit = EXPOSURE[_unit_kind(path)] + EXPOSURE_MARGIN
        res = subprocess.run(
            [analyze, "security", "--offline=true", f"--threshold={round(limit * 10)}", str(instance)],
            capture_output=True, text=True, cwd=tmp_path,
        )
        score = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr
        assert res.returncode == 0, f"{path}: {score} (allowed: {limit:.1f})\n" + res.stdout[-1500:]


def test_scripts_pass_shellcheck_and_bash_n(files: Landed, tmp_path: Path) -> None:
    shellcheck = _need("shellcheck")
    assert files.scripts
    for name, script in files.scripts.items():
        path = tmp_path / (name.replace(" ", "-") + ".sh")
        path.write_text("#!/bin/bash\n" + script)
        res = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert res.returncode == 0, f"{name}: {res.stderr}"
        res = subprocess.run([shellcheck, "-s", "bash", "-S", "style", str(path)], capture_output=True, text=True)
        assert res.returncode == 0, f"{name}:\n{res.stdout}"
        assert "\nset -euo pipefail\n" in script, f"{name} does not start strict"


def test_landed_shell_files_pass_shellcheck(files: Landed, tmp_path: Path) -> None:
    shellcheck = _need("shellcheck")
    for path, content in files.files.items():
        if content.startswith("#!/bin/sh") or content.startswith("#!/bin/bash"):
            f = tmp_path / Path(path).name
            f.write_text(content)
            res = subprocess.run([shellcheck, str(f)], capture_output=True, text=True)
            assert res.returncode == 0, f"{path}:\n{res.stdout}"


def test_r_launcher_parses(files: Landed, tmp_path: Path) -> None:
    rscript = _need("Rscript")
    f = tmp_path / "run-api.R"
    f.write_text(files.files["/usr/local/lib/plumber-hosting/run-api.R"])
    res = subprocess.run([rscript, "-e", f"invisible(parse('{f}'))"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_env_file_escapes_for_systemd() -> None:
    from components.app import env_file
    from components.config import AppSpec

    text = env_file(AppSpec(name="x", source=".", env={"A": 'q"uo$te\\d `x`'}))
    assert 'A="q\\"uo\\$te\\\\d \\`x\\`"' in text
