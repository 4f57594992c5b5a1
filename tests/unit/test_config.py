"""Bad input: every bad config fails before any resource is registered, with
one message naming the offending key path and what was expected."""

from __future__ import annotations

import copy
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from components.config import ConfigError
from tests.conftest import TEST_KEY
from tests.program import run_program


def existing_host() -> dict[str, Any]:
    return {
        "host": {"address": "192.0.2.10", "user": "root"},
        "ssh_private_key_file": str(TEST_KEY),
        "admin_cidrs": ["192.0.2.0/24"],
        "apps": [
            {"name": "hello", "source": "examples/hello", "health_path": "/health"},
            {"name": "hashing", "source": "examples/hashing", "path": "/hash", "packages": ["digest"]},
        ],
    }


def droplet() -> dict[str, Any]:
    cfg = existing_host()
    del cfg["host"]
    cfg["ssh_public_key"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKm6o1g0Hd9h1tUe2cjy0Fm4ZbJm5b6kQh8r0bHTS8Nq me"
    return cfg


def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Copy of base with the dotted/indexed path set (value ... deletes the key)."""
    cfg = copy.deepcopy(base)
    node: Any = cfg
    parts = path.replace("]", "").replace("[", ".").split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node[p]
    last = parts[-1]
    if value is ...:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return cfg


H, D = existing_host, droplet
APP2 = {"name": "other", "source": "examples/hello"}

# Bad key material, made once: files the catalogue points ssh_private_key_file at.
_KEYS = Path(tempfile.mkdtemp(prefix="plumber-hosting-bad-keys-"))
_GOOD_KEY = TEST_KEY.read_text()
_PUB = TEST_KEY.with_name(TEST_KEY.name + ".pub").read_text().strip()
_KEY_LINES = _GOOD_KEY.splitlines()


def _key_file(name: str, content: str | bytes) -> str:
    path = _KEYS / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def _encrypted_key() -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(_KEYS / "encrypted")], check=True)
    return str(_KEYS / "encrypted")


def _broken_renv_app() -> str:
    app = _KEYS / "renv-app"
    app.mkdir()
    (app / "plumber.R").write_text("#* @get /\nfunction() 1\n")
    (app / "renv.lock").write_text('{"R": {"Version": "4.4.2"},\n "Packages": {\n')  # cut short
    return str(app)


TRUNCATED_KEY = "\n".join(_KEY_LINES[:2] + _KEY_LINES[-1:]) + "\n"  # the middle of the paste lost
PUB_TYPE, PUB_DATA = _PUB.split()[:2]
CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUX0bQ==\n-----END CERTIFICATE-----\n"  # cut short
HTTPS = {"email": "ops@example.com", "accept_tos": True}

# (case id, config, key path the message must name, words the message must hold)
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown top-level key", with_(H(), "regoin", "nyc3"), "regoin", "unknown key"),
    ("unknown app key", with_(H(), "apps[0].worker", 2), "apps[0].worker", "expected one of"),
    ("unknown https key", with_(D(), "https", {"email": "a@b.co", "accept_tos": True, "tos": 1}), "https.tos", "unknown key"),
    ("duplicate app name", with_(H(), "apps[1].name", "hello"), "apps[1].name", "duplicate app name"),
    ("duplicate path", with_(H(), "apps[1].path", "/hello"), "apps[1].path", "duplicate path"),
    ("nested paths", with_(H(), "apps[1].path", "/hello/hash"), "apps[1].path", "nests with"),
    ("path under .well-known", with_(H(), "apps[1].path", "/.well-known"), "apps[1].path", "expected a URL path"),
    ("path is /healthz", with_(H(), "apps[1].path", "/healthz"), "apps[1].path", "collides with /healthz"),
    ("path traversal", with_(H(), "apps[0].path", "/a/../etc"), "apps[0].path", "expected a URL path"),
    ("path trailing slash", with_(H(), "apps[0].path", "/api/"), "apps[0].path", "no trailing"),
    ("path is /", with_(H(), "apps[0].path", "/"), "apps[0].path", "forward_root"),
    ("path without slash", with_(H(), "apps[0].path", "api"), "apps[0].path", "leading '/'"),
    ("name with capitals", with_(H(), "apps[0].name", "Hello"), "apps[0].name", "[a-z0-9-]"),
    ("name with underscore", with_(H(), "apps[0].name", "my_api"), "apps[0].name", "[a-z0-9-]"),
    ("workers 0", with_(H(), "apps[0].workers", 0), "apps[0].workers", "greater than or equal to 1"),
    ("workers 33", with_(H(), "apps[0].workers", 33), "apps[0].workers", "less than or equal to 32"),
    ("workers not a number", with_(H(), "apps[0].workers", "two"), "apps[0].workers", "integer"),
    ("source missing", with_(H(), "apps[0].source", "examples/nope"), "apps[0].source", "no such directory"),
    ("source without entrypoint", with_(H(), "apps[0].source", "components"), "apps[0].source", "neither plumber.R nor entrypoint.R"),
    ("app without source", with_(H(), "apps[0].source", ...), "apps[0].source", "required key is missing"),
    ("https without domain", with_(D(), "https", {"email": "ops@example.com", "accept_tos": True}), "https", "requires 'domain'"),
    ("https without accept_tos", with_(with_(D(), "domain", "example.com"), "https", {"email": "ops@example.com"}), "https.accept_tos", "must be true"),
    ("https bad email", with_(with_(D(), "domain", "example.com"), "https", {"email": "ops", "accept_tos": True}), "https.email", "email address"),
    ("forward_root names no app", with_(H(), "forward_root", "nope"), "forward_root", "names no app 'nope'"),
    ("host with droplet keys", with_(H(), "region", "fra1"), "region", "only applies when the program creates the droplet"),
    ("host with reserved_ip", with_(H(), "reserved_ip", True), "reserved_ip", "only applies"),
    ("invalid CIDR", with_(H(), "admin_cidrs", ["10.0.0.0/33"]), "admin_cidrs", "not a CIDR"),
    ("CIDR with host bits", with_(H(), "admin_cidrs", ["10.0.0.1/8"]), "admin_cidrs", "not a CIDR"),
    ("empty admin_cidrs", with_(H(), "admin_cidrs", []), "admin_cidrs", "at least one CIDR"),
    ("droplet without ssh key", with_(D(), "ssh_public_key", ...), "ssh_public_key", "required"),
    ("no private key", with_(H(), "ssh_private_key_file", ...), "ssh_private_key", "required"),
    ("private key file missing", with_(H(), "ssh_private_key_file", "/nonexistent/key"), "ssh_private_key_file", "no such file"),
    ("bad public key", with_(D(), "ssh_public_key", "hello"), "ssh_public_key", "OpenSSH public key"),
    ("bad r_version", with_(H(), "r_version", "latest"), "r_version", "'distro' or an R version"),
    ("bad cran_repo", with_(H(), "cran_repo", "ftp://x"), "cran_repo", "repository URL"),
    ("bad R package", with_(H(), "apps[1].packages", ["dig est"]), "apps[1].packages[0]", "not an R package name"),
    ("bad R pin", with_(H(), "apps[1].packages", ["digest", "phversion@latest"]), "apps[1].packages[1]", "name@version"),
    ("R package twice, once pinned", with_(H(), "apps[1].packages", ["digest", "digest@0.6.33"]), "apps[1].packages", "listed twice"),
    ("bad system package", with_(H(), "apps[0].system_packages", ["libxml2-dev", "libpq5; rm -rf /"]), "apps[0].system_packages[1]", "not a Debian/Ubuntu package name"),
    ("upper-case system package", with_(H(), "apps[1].system_packages", ["LibPQ5"]), "apps[1].system_packages[0]", "not a Debian/Ubuntu package name"),
    ("system package twice", with_(H(), "apps[0].system_packages", ["jq", "jq"]), "apps[0].system_packages", "listed twice"),
    ("bad renv_repos", with_(H(), "apps[0].renv_repos", "cran"), "apps[0].renv_repos", "'cran_repo' or 'lockfile'"),
    ("bad env name", with_(H(), "apps[0].env", {"1X": "a"}), "apps[0].env", "not an environment variable name"),
    ("reserved env name", with_(H(), "apps[0].env", {"PORT": "1"}), "apps[0].env", "set by plumber-hosting"),
    ("newline in env value", with_(H(), "apps[0].secret_env", {"TOKEN": "a\nb"}), "apps[0].secret_env", "newline"),
    ("env and secret_env clash", with_(with_(H(), "apps[0].env", {"A": "1"}), "apps[0].secret_env", {"A": "2"}), "apps[0].secret_env", "also set in env"),
    ("port collision", with_(with_(H(), "apps[0].port", 20000), "apps[1].port", 20001), "apps[1].port", "overlap"),
    ("port too low", with_(H(), "apps[0].port", 80), "apps[0].port", "greater than or equal to 1024"),
    ("bad swap", with_(H(), "swap_gb", -1), "swap_gb", "greater than or equal to 0"),
    ("bad domain", with_(D(), "domain", "not a domain"), "domain", "DNS zone"),
    ("bad hostname", with_(D(), "hostname", "a b"), "hostname", "record name"),
    ("bad region", with_(D(), "region", "NYC 3"), "region", "DigitalOcean slug"),
    ("bad max_body", with_(H(), "apps[0].max_body", "10 MB"), "apps[0].max_body", "size such as"),
    ("bad health_path", with_(H(), "apps[0].health_path", "health"), "apps[0].health_path", "path such as /health"),
    ("host without address", with_(H(), "host", {"user": "root"}), "host.address", "required key is missing"),
    ("host bad port", with_(H(), "host.port", 70000), "host.port", "less than or equal to 65535"),
    ("apps not a list", with_(H(), "apps", {"name": "x"}), "apps", "valid list"),
    ("port in ephemeral range", with_(H(), "apps[0].port", 40000), "apps[0].port", "ephemeral range"),
    ("api key too short", with_(H(), "apps[0].auth", {"api_keys": ["short"]}), "apps[0].auth.api_keys", "key [0]"),
    ("api key with space", with_(H(), "apps[0].auth", {"api_keys": ["a key with spaces in it"]}),
     "apps[0].auth.api_keys", "without spaces"),
    ("api keys twice", with_(H(), "apps[0].auth", {"api_keys": ["k" * 20, "k" * 20]}), "apps[0].auth.api_keys", "twice"),
    ("auth without keys", with_(H(), "apps[0].auth", {}), "apps[0].auth.api_keys", "required key is missing"),
    ("unknown auth key", with_(H(), "apps[0].auth", {"api_keys": ["k" * 20], "users": []}), "apps[0].auth.users",
     "expected one of: api_keys"),
    ("bad rate", with_(H(), "apps[0].rate_limit", "10/s"), "apps[0].rate_limit.rate", "10r/s or 600r/m"),
    ("negative burst", with_(H(), "apps[0].rate_limit", {"rate": "5r/s", "burst": -1}), "apps[0].rate_limit.burst",
     "greater than or equal to 0"),
    ("bad allow_cidrs", with_(H(), "apps[0].allow_cidrs", ["10.1.2.3/8"]), "apps[0].allow_cidrs", "not a CIDR"),
    # Everything the program decodes or parses (issue 23 point 13): a config error naming the key,
    # never a traceback from the code that uses the value later.
    ("public key: broken base64 (a truncated paste)", with_(D(), "ssh_public_key", f"{PUB_TYPE} {PUB_DATA[:-1]} me"),
     "ssh_public_key", "base64 is damaged"),
    ("public key: cut short at a base64 boundary", with_(D(), "ssh_public_key", f"{PUB_TYPE} {PUB_DATA[:-8]} me"),
     "ssh_public_key", "not a whole ssh-ed25519 key"),
    ("public key: type and data disagree", with_(D(), "ssh_public_key", f"ssh-rsa {PUB_DATA} me"),
     "ssh_public_key", "not a whole ssh-rsa key"),
    ("public key: prefix alone", with_(D(), "ssh_public_key", "ssh-ed25519"), "ssh_public_key", "OpenSSH public key line"),
    ("public key: two lines", with_(D(), "ssh_public_key", f"{_PUB}\n{_PUB}"), "ssh_public_key", "one OpenSSH public key line"),
    ("private key file is a directory", with_(H(), "ssh_private_key_file", str(_KEYS)), "ssh_private_key_file", "is a directory"),
    ("private key file is the .pub", with_(H(), "ssh_private_key_file", str(TEST_KEY) + ".pub"), "ssh_private_key_file",
     "is a public key; expected the private key"),
    ("private key file is empty", with_(H(), "ssh_private_key_file", _key_file("empty", "")), "ssh_private_key_file", "is empty"),
    ("private key file is binary", with_(H(), "ssh_private_key_file", _key_file("binary", b"\xff\xfe\x00key")),
     "ssh_private_key_file", "not a text file"),
    ("private key file is no key", with_(H(), "ssh_private_key_file", _key_file("notes", "my key is elsewhere\n")),
     "ssh_private_key_file", "not an OpenSSH/PEM private key"),
    ("private key file is truncated", with_(H(), "ssh_private_key_file", _key_file("truncated", TRUNCATED_KEY)),
     "ssh_private_key_file", "damaged"),
    ("private key file is huge", with_(H(), "ssh_private_key_file", _key_file("huge", "x" * 100_000)),
     "ssh_private_key_file", "not a private key"),
    ("private key file is a PuTTY key", with_(H(), "ssh_private_key_file", _key_file("k.ppk", "PuTTY-User-Key-File-3: ssh-ed25519\n")),
     "ssh_private_key_file", "puttygen"),
    ("private key has a passphrase", with_(H(), "ssh_private_key_file", _encrypted_key()), "ssh_private_key_file", "passphrase"),
    ("private key secret truncated", with_(with_(H(), "ssh_private_key_file", ...), "ssh_private_key", TRUNCATED_KEY),
     "ssh_private_key", "damaged"),
    ("private key secret is the public key", with_(with_(H(), "ssh_private_key_file", ...), "ssh_private_key", _PUB),
     "ssh_private_key", "is a public key"),
    ("private key secret ends mismatched", with_(with_(H(), "ssh_private_key_file", ...), "ssh_private_key",
                                                 _GOOD_KEY.replace("END OPENSSH", "END RSA")), "ssh_private_key", "damaged"),
    ("acme_ca_cert cut short", with_(with_(D(), "domain", "example.com"), "https", {**HTTPS, "acme_ca_cert": CA}),
     "https.acme_ca_cert", "damaged"),
    ("acme_ca_cert is a key", with_(with_(D(), "domain", "example.com"), "https", {**HTTPS, "acme_ca_cert": _GOOD_KEY}),
     "https.acme_ca_cert", "expected a PEM certificate"),
    ("apps is broken JSON", with_(H(), "apps", '[{"name": "hello",]'), "apps", "not valid JSON"),
    ("replicas not a number", with_(D(), "replicas", "two"), "replicas", "valid integer"),
    ("memory_max of zero", with_(H(), "apps[0].memory_max", "0M"), "apps[0].memory_max", "at least 64M"),
    ("memory_max too small for R", with_(H(), "apps[0].memory_max", "4096K"), "apps[0].memory_max", "at least 64M"),
    ("max_body of zero", with_(H(), "apps[0].max_body", "0M"), "apps[0].max_body", "turns nginx's limit off"),
    ("max_body of absurd size", with_(H(), "apps[0].max_body", "99999999G"), "apps[0].max_body", "at most"),
    ("timeout not a number", with_(H(), "apps[0].timeout", "60s"), "apps[0].timeout", "valid integer"),
    ("include outside the app", with_(H(), "apps[0].include", ["../hashing/plumber.R"]), "apps[0].include",
     "expected a path inside the app's directory"),
    ("include missing", with_(H(), "apps[0].include", ["data/model.rds"]), "apps[0].include[0]", "no such file or directory"),
    ("include a secret file", with_(H(), "apps[0].include", [".Renviron"]), "apps[0].include", ".Renviron is never packed"),
    ("broken renv.lock", with_(H(), "apps[0].source", _broken_renv_app()), "apps[0].source", "renv.lock is not valid JSON"),
]


@pytest.mark.parametrize(("config", "key", "words"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_names_the_key(config: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        run_program(config)
    message = str(err.value)
    assert f"plumber-hosting:{key}:" in message, message
    assert words in message, message


def test_enough_bad_configs() -> None:
    assert len(BAD) >= 25


def test_nothing_registered_on_bad_config() -> None:
    from tests import program

    registered: list[str] = []
    original = program._Monitor.RegisterResource

    def spy(self: Any, request: Any) -> Any:
        registered.append(request.type)
        return original(self, request)

    program._Monitor.RegisterResource = spy  # type: ignore[method-assign]
    try:
        with pytest.raises(ConfigError):
            run_program(with_(H(), "apps[1].name", "hello"))
    finally:
        program._Monitor.RegisterResource = original  # type: ignore[method-assign]
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []


def test_all_problems_reported_at_once() -> None:
    cfg = with_(with_(H(), "apps[0].workers", 0), "forward_root", "nope")
    with pytest.raises(ConfigError) as err:
        run_program(cfg)
    # pydantic problems come first; the semantic pass runs once the shape is right
    assert "apps[0].workers" in str(err.value)
    cfg = with_(with_(H(), "apps[1].path", "/hello"), "forward_root", "nope")
    with pytest.raises(ConfigError) as err:
        run_program(cfg)
    assert "apps[1].path" in str(err.value) and "forward_root" in str(err.value)


def test_valid_configs_pass() -> None:
    assert run_program(H()).commands
    assert run_program(D()).commands
