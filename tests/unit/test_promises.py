"""What the README promises, checked on what the real program declares, in seconds.

Each test reads the rendered files and scripts of the real ``__main__.py``
(under Pulumi's mocks, with the real stack files) and, where a promise is about
behaviour, runs the very shell code the server would run (a function or a
section cut out of the rendered script) with the server's commands replaced by
stand-ins. ``make mutations`` (tests/mutations.py) breaks each promise in a copy
of the repository and shows which of these tests catches it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import gzip
import re
import shlex
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_KEY
from tests.program import ProgramRun, run_program, run_stack, stack_config
from tests.static.rendered import landed
from tests.unit.scripts import assignment, bash, create, delete, function, section

SITE_FILE = "/etc/nginx/sites-available/plumber-hosting"
HSTS = "Strict-Transport-Security"


def _dev(**overrides: Any) -> ProgramRun:
    cfg = copy.deepcopy(stack_config("dev"))
    cfg.update(overrides)
    return run_program(cfg, stack="dev")












# ----------------------------------------------------------------- HSTS


def test_no_hsts_without_https() -> None:
    """A plain-HTTP stack never sends HSTS (a browser would refuse the site over HTTP for two years)."""
    files = landed(run_stack("dev"))
    headers = files.files["/etc/nginx/plumber-hosting/security-headers.conf"]
    assert HSTS not in headers
    assert not any(HSTS in text for text in files.files.values())
    assert "X-Content-Type-Options nosniff" in headers


def test_hsts_with_https() -> None:
    headers = landed(run_stack("prod")).files["/etc/nginx/plumber-hosting/security-headers.conf"]
    assert 'add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;' in headers


# ----------------------------------------------------------------- forward_root


def _root_redirect(run: ProgramRun) -> str | None:
    site = landed(run).files[SITE_FILE]
    m = re.search(r"location = / \{\s*return 30[12] (\S+);\s*\}", site)
    return m.group(1) if m else None


@pytest.mark.parametrize(("app", "target"), [("hello", "/hello/"), ("hashing", "/hash/")])
def test_forward_root_redirects_to_the_app(app: str, target: str) -> None:
    assert _root_redirect(_dev(forward_root=app)) == target


def test_no_forward_root_no_redirect() -> None:
    cfg = copy.deepcopy(stack_config("dev"))
    cfg.pop("forward_root")
    assert _root_redirect(run_program(cfg, stack="dev")) is None


# ----------------------------------------------------------------- firewall


def _ufw_rules(run: ProgramRun) -> list[str]:
    script = create(run, "provision-server")
    m = re.search(r"<<'PH_UFW'\n(.*?)\nPH_UFW\n", script, re.S)
    assert m, "no ufw rules in the provision script"
    return m.group(1).splitlines()


def test_ufw_takes_ssh_only_from_admin_cidrs() -> None:
    assert _ufw_rules(run_stack("prod")) == [
        "ufw allow from 203.0.113.0/24 to any port 22 proto tcp",
        "ufw allow from 2001:db8::/32 to any port 22 proto tcp",
        "ufw allow 80/tcp",
        "ufw allow 443/tcp",
    ]
    assert _ufw_rules(_dev(admin_cidrs=["198.51.100.0/24"]))[0] == "ufw allow from 198.51.100.0/24 to any port 22 proto tcp"


def test_ufw_opens_ssh_to_all_only_when_admin_cidrs_say_so() -> None:
    assert _ufw_rules(run_stack("dev"))[0] == "ufw allow 22/tcp"  # the dev stack: admin_cidrs ["0.0.0.0/0"]


# ----------------------------------------------------------------- access control


def _guarded_run() -> ProgramRun:
    cfg = copy.deepcopy(stack_config("dev"))
    cfg["apps"][0].update(allow_cidrs=["203.0.113.0/24"], rate_limit={"rate": "5r/s", "burst": 3})
    return run_program(cfg, stack="dev")


def test_allow_cidrs_lets_in_only_the_listed_networks() -> None:
    files = landed(_guarded_run())
    upstream = files.upstreams["hello.a"]
    geo = re.search(r"geo \$plumber_hello_allowed \{(.*?)\}", upstream, re.S)
    assert geo, upstream
    entries = [line.strip().rstrip(";").split() for line in geo.group(1).strip().splitlines()]
    assert entries == [["default", "0"], ["203.0.113.0/24", "1"]]
    location = files.files["/etc/nginx/plumber-hosting/locations/hello.conf"]
    assert re.search(r"if \(\$plumber_hello_allowed = 0\) \{\s*return 403;\s*\}", location), location
    # the other app has no rule at all
    assert "_allowed" not in files.files["/etc/nginx/plumber-hosting/locations/hashing.conf"]


def test_rate_limit_answers_429() -> None:
    location = landed(_guarded_run()).files["/etc/nginx/plumber-hosting/locations/hello.conf"]
    assert "limit_req zone=plumber_hello burst=3 nodelay;" in location
    assert re.findall(r"limit_req_status (\d+);", location) == ["429"]


# ----------------------------------------------------------------- docs


def _docs_flag(unit: str) -> str:
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    return exec_start.split()[-1]


def test_docs_only_for_apps_that_ask() -> None:
    files = landed(run_stack("dev"))  # hello: docs: true; hashing: no docs
    assert _docs_flag(files.files["/etc/systemd/system/plumber-hello@.service"]) == "true"
    assert _docs_flag(files.files["/etc/systemd/system/plumber-hashing@.service"]) == "false"
    launcher = files.files["/usr/local/lib/plumber-hosting/run-api.R"]
    assert 'docs <- identical(args[[3L]], "true")' in launcher and "pr_set_docs(pr, docs)" in launcher


# ----------------------------------------------------------------- the worker unit


def test_worker_unit_is_unprivileged_and_read_only() -> None:
    unit = landed(run_stack("dev")).files["/etc/systemd/system/plumber-hello@.service"]
    lines = set(unit.splitlines())
    assert {"User=plumber", "Group=plumber", "ProtectSystem=strict", "ProtectHome=yes", "NoNewPrivileges=yes",
            "CapabilityBoundingSet=", "PrivateTmp=yes"} <= lines, unit
    assert not any(line.startswith(("User=root", "DynamicUser=no", "ReadWritePaths=")) for line in lines)


# ----------------------------------------------------------------- the health gate


GATE_HARNESS = """
set -euo pipefail
APP=hello; RELEASE=r1
{assignments}
log() {{ :; }}
unit() {{ printf 'plumber-%s@%s.service' "$APP" "$1"; }}
curl() {{ printf '%s' "$CODE"; }}                       # what the worker answered
systemctl() {{ case "$1" in show) echo 0 ;; *) return 1 ;; esac; }}  # running, never restarted
journalctl() {{ :; }}
sleep() {{ SECONDS=$((SECONDS + 1)); }}                  # time passes without waiting
{gate}
if gate 10000 0; then echo accepted; else echo refused; fi
"""


def _gate(health_path: str | None) -> str:
    cfg = copy.deepcopy(stack_config("dev"))
    cfg["apps"][0]["health_path"] = health_path
    if health_path is None:
        del cfg["apps"][0]["health_path"]
    script = create(run_program(cfg, stack="dev"), "hello-deploy")
    assignments = "\n".join(assignment(script, v) for v in ("HEALTH_PATH", "STRICT_HEALTH", "START_TIMEOUT"))
    return GATE_HARNESS.format(assignments=assignments, gate=function(script, "gate"))


def _verdicts(harness: str, codes: list[str]) -> dict[str, str]:
    out = {}
    for code in codes:
        res = bash(f"CODE={shlex.quote(code)}\n{harness}")
        assert res.returncode == 0, res.stderr
        out[code] = res.stdout.strip()
    return out


def test_health_gate_with_a_health_path_accepts_only_2xx() -> None:
    verdicts = _verdicts(_gate("/health"), ["200", "204", "301", "404", "500", "502", "503", "000"])
    assert verdicts == {"200": "accepted", "204": "accepted", "301": "refused", "404": "refused",
                        "500": "refused", "502": "refused", "503": "refused", "000": "refused"}


def test_health_gate_without_a_health_path_refuses_5xx_and_no_answer() -> None:
    verdicts = _verdicts(_gate(None), ["200", "404", "500", "503", "000"])
    assert verdicts == {"200": "accepted", "404": "accepted", "500": "refused", "503": "refused", "000": "refused"}


# ----------------------------------------------------------------- keep_releases




@pytest.mark.parametrize("keep", [1, 2, 5])
def test_keep_releases_keeps_that_many(tmp_path: Path, keep: int) -> None:
    cfg = copy.deepcopy(stack_config("dev"))
    cfg["apps"][0]["keep_releases"] = keep
    script = create(run_program(cfg, stack="dev"), "hello-deploy")
    root = tmp_path / "srv"
    names = [f"rel{i}" for i in range(7)]
    for i, name in enumerate(names):  # rel6 is the newest: the one just deployed
        (root / "releases" / name).mkdir(parents=True)
        subprocess.run(["touch", "-d", f"@{1_700_000_000 + 60 * i}", str(root / "releases" / name)], check=True)
    prune = section(script, "keep the last KEEP_RELEASES releases")
    res = bash(f"set -euo pipefail\n{assignment(script, 'KEEP_RELEASES')}\nROOT={shlex.quote(str(root))}\n"
                f"REL=$ROOT/releases/rel6\n{prune}")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (root / "releases").iterdir()) == names[-keep:]


# ----------------------------------------------------------------- removing an app


def _paths_removed(delete: str, app: str) -> set[str]:
    state = assignment(delete, "STATE").split("=", 1)[1].replace("$APP", app)
    out: set[str] = set()
    for line in delete.splitlines():
        words = shlex.split(line.strip()) if line.strip().startswith("rm ") else []
        out |= {w.replace("$APP", app).replace("$STATE", state) for w in words[1:] if not w.startswith("-")}
    return out


def test_removing_an_app_removes_everything_its_deploy_wrote() -> None:
    run = run_stack("dev")
    deploy, removal = create(run, "hashing-deploy"), delete(run, "hashing-deploy")
    written = {assignment(deploy, v).split("=", 1)[1].replace("$APP", "hashing")
               for v in ("ROOT", "STATE", "ENV_FILE", "UNIT_FILE", "UPSTREAM", "LOCATION")}
    written |= {"/etc/plumber-hosting/health/hashing", "/var/lib/plumber-hashing"}
    assert "/etc/plumber-hosting/env/hashing.env" in written  # the env file holds the app's secrets
    missing = written - _paths_removed(removal, "hashing")
    assert not missing, f"left on the server after the app is removed: {sorted(missing)}"


# ----------------------------------------------------------------- secrets, however encoded

# base64 runs, standard and URL-safe alphabets apart (a run may touch other text: "r1-<base64>")
B64_RUNS = (re.compile(r"[A-Za-z0-9+/]{16,}={0,2}"), re.compile(r"[A-Za-z0-9_-]{16,}={0,2}"))


def _decodings(text: str, depth: int = 0) -> Iterator[bytes]:
    """Every base64 run in ``text`` decoded (at each of the four alignments, since the run may
    start with a few characters of something else), decompressed where it holds gzip or zlib
    data, and decoded again, a few levels deep."""
    if depth > 2:
        return
    for pattern, decode in zip(B64_RUNS, (base64.b64decode, base64.urlsafe_b64decode), strict=True):
        for m in pattern.finditer(text):
            run = m.group(0).rstrip("=")
            for offset in range(4):
                token = run[offset:]
                if len(token) % 4 == 1:
                    token = token[:-1]
                if len(token) < 16:
                    continue
                token += "=" * (-len(token) % 4)
                try:
                    raw = decode(token)
                except (binascii.Error, ValueError):
                    continue
                for data in _uncompressed(raw):
                    yield data
                    if depth < 2 and B64_RUNS[0].search(data.decode("latin-1")):
                        yield from _decodings(data.decode("latin-1"), depth + 1)


def _uncompressed(raw: bytes) -> Iterator[bytes]:
    """``raw``, and whatever gzip or zlib stream starts anywhere in it, inflated."""
    yield raw
    for magic, wbits in ((b"\x1f\x8b\x08", 31), (b"\x78\x9c", 15), (b"\x78\xda", 15), (b"\x78\x01", 15)):
        at = raw.find(magic)
        while at != -1:
            try:
                yield zlib.decompressobj(wbits).decompress(raw[at:], 1 << 24)
            except zlib.error:
                pass
            at = raw.find(magic, at + 1)


def _plain_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _plain_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _plain_strings(v)


def _leaks(run: ProgramRun, secrets: list[str]) -> list[tuple[str, str, str]]:
    found = []
    for r in run.resources:
        for key, value in r.inputs.items():
            if key in r.secret_inputs:
                continue
            for text in _plain_strings(value):
                for secret in secrets:
                    if secret in text:
                        found.append((r.name, key, "plain"))
                    elif any(secret.encode() in data for data in _decodings(text)):
                        found.append((r.name, key, "encoded"))
    return found


SECRET = "s3cr3t-value-that-must-not-leak"


def _secret_run() -> ProgramRun:
    cfg = copy.deepcopy(stack_config("dev"))
    cfg["apps"][0]["secret_env"] = {"API_TOKEN": SECRET}
    return run_program(cfg, stack="dev", secret_keys=("apps",))


def _secrets() -> list[str]:
    key_lines = TEST_KEY.read_text().strip().splitlines()
    return [SECRET, key_lines[1], key_lines[2]]


def test_secrets_are_in_no_plain_input_even_encoded() -> None:
    run = _secret_run()
    assert not _leaks(run, _secrets())
    assert {"stdin", "connection"} <= run.named("hello-deploy").secret_inputs


@pytest.mark.parametrize("encode", ["base64", "gzip+base64", "urlsafe", "glued", "base64 of base64"])
def test_the_secrets_check_finds_an_encoded_secret(encode: str) -> None:
    """The check above can fail: a secret hidden in a plain input, encoded, is found."""
    run = _secret_run()
    payload = f"API_TOKEN={SECRET}\n".encode()
    blob = {"base64": base64.b64encode(payload), "gzip+base64": base64.b64encode(gzip.compress(payload)),
            "urlsafe": base64.urlsafe_b64encode(payload),
            "glued": b"r1-x" + base64.b64encode(gzip.compress(b"A=1\n" + payload)),  # mid-word, off alignment
            "base64 of base64": base64.b64encode(base64.b64encode(payload))}[encode].decode()
    site = run.named("site-nginx")
    site.inputs["create"] += f"\necho {blob} >/dev/null\n"
    assert _leaks(run, _secrets()) == [("site-nginx", "create", "encoded")]
