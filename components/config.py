"""Stack config -> validated model.

Everything the program does starts from :func:`load_spec`, which reads every key
under the ``plumber-hosting:`` namespace, validates the whole config with
pydantic plus the cross-field rules below, and raises one :class:`ConfigError`
naming each offending key path (``apps[2].path``) before any resource exists.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import zlib
from pathlib import Path
from typing import Any, Literal

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from components.bundle import NEVER_PACKED, BundleError, select_files, selection_notes
from components.droplet_rules import droplet_problems
from components.keys import (
    agent_problem,
    certificate_problem,
    normalize_private_key,
    private_key_problem,
    public_key_problem,
    read_private_key_file,
)
from components.packages import RENV_LOCK, DebPackage, RPackage, split_pin

NAMESPACE = "plumber-hosting"

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
ANYWHERE = ["0.0.0.0/0", "::/0"]
ENTRYPOINTS = ("entrypoint.R", "plumber.R")
RESERVED_PATHS = ("/.well-known", "/healthz", "/__plumber-hosting")

# Worker ports. An app whose port is derived from its name gets a slot of
# PORT_SLOT_WIDTH ports starting at PORT_BASE + slot * PORT_SLOT_WIDTH; it uses
# `workers` of them plus one spare (for a single worker's zero-downtime swap).
# Slots stay below Linux's ephemeral range (32768+).
PORT_BASE = 10000
PORT_SLOT_WIDTH = 40
PORT_SLOTS = 550
MAX_WORKERS = 32
EPHEMERAL_PORTS = 32768  # outgoing connections take ports from here up
MAX_REPLICAS = 20

# Keys that only make sense when the program creates the droplet.
DROPLET_ONLY = (
    "region",
    "size",
    "image",
    "droplet_name",
    "tags",
    "backups",
    "monitoring",
    "ipv6",
    "ssh_public_key",
    "ssh_key_ids",
    "reserved_ip",
    "replicas",
    "alerts",
    # components/droplet_rules.py
    "protect",
    "resize_disk",
    "move_to_vpc",
)

# Keys whose config value is text even when it looks like JSON (a droplet
# named "123" stays a string).
TEXT_KEYS = {
    "region",
    "size",
    "image",
    "droplet_name",
    "ssh_public_key",
    "ssh_private_key",
    "ssh_private_key_file",
    "r_version",
    "cran_repo",
    "domain",
    "hostname",
    "forward_root",
}

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
PATH_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._~-]*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
R_VERSION_RE = re.compile(r"^(distro|\d+\.\d+\.\d+)$")
SIZE_RE = re.compile(r"^\d+[KMG]$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
HOSTNAME_RE = re.compile(r"^(@|[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*)$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
RATE_RE = re.compile(r"^([1-9][0-9]{0,5})r/([sm])$")
API_KEY_RE = re.compile(r"^[\x21-\x7e]{16,256}$")  # printable ASCII, no spaces
RESERVED_ENV = {"PORT", "PLUMBER_PORT", "PLUMBER_APP", "R_LIBS_USER", "HOME", "USER", "PATH"}


MIN_MEMORY_MAX_KIB = 64 * 1024
MAX_SIZE_KIB = 1024 * 1024 * 1024  # 1024G


def _size_kib(size: str) -> int:
    """'512K', '10M', '1G' (already matched by SIZE_RE) in KiB."""
    return int(size[:-1]) * {"K": 1, "M": 1024, "G": 1024 * 1024}[size[-1]]


class ConfigError(pulumi.RunError):
    """Raised once, listing every problem in the stack config."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSpec(Strict):
    """Existing-host mode: deploy over SSH to a server the program does not create."""

    address: str
    user: str = "root"
    port: int = Field(22, ge=1, le=65535)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", v):
                raise ValueError("expected an IP address or a DNS name") from None
        return v

    @field_validator("user")
    @classmethod
    def _user(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", v):
            raise ValueError("expected a Unix user name such as root or deploy")
        return v


class HttpsSpec(Strict):
    email: str
    accept_tos: bool = False
    acme_server: str = LETSENCRYPT
    # PEM of a CA that signs the ACME server's own HTTPS endpoint (a private
    # ACME server such as pebble); not needed for Let's Encrypt.
    acme_ca_cert: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not EMAIL_RE.match(v):
            raise ValueError("expected an email address for the ACME account")
        return v

    @field_validator("acme_server")
    @classmethod
    def _acme(cls, v: str) -> str:
        if not re.fullmatch(r"https://[^\s'\"]+", v):
            raise ValueError("expected an https:// ACME directory URL")
        return v

    @field_validator("acme_ca_cert")
    @classmethod
    def _ca(cls, v: str | None) -> str | None:
        problem = certificate_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v


def _cidr_list(v: list[str]) -> list[str]:
    for c in v:
        try:
            ipaddress.ip_network(c, strict=True)
        except ValueError:
            raise ValueError(f"{c!r} is not a CIDR such as 203.0.113.0/24") from None
    return v


class AuthSpec(Strict):
    """API keys an app's requests must carry (Authorization: Key <k>, or X-Api-Key).

    Only their SHA-256 digests reach the server; messages never echo a key.
    """

    api_keys: list[str]

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("expected at least one key (remove 'auth' to serve without keys)")
        for i, key in enumerate(v):
            if not isinstance(key, str) or not API_KEY_RE.match(key):
                raise ValueError(
                    f"key [{i}] is not 16-256 printable characters without spaces "
                    "(make one with: openssl rand -hex 24)"
                )
        if len(set(v)) != len(v):
            raise ValueError("a key is listed twice")
        return v

    @property
    def digests(self) -> list[str]:
        return sorted({hashlib.sha256(k.encode()).hexdigest() for k in self.api_keys})


class RateLimitSpec(Strict):
    """nginx limit_req per client address: ``rate`` ("10r/s", "600r/m"), ``burst`` beyond it."""

    rate: str
    burst: int | None = Field(None, ge=0, le=100000)

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: str) -> str:
        if not RATE_RE.match(v):
            raise ValueError("expected a rate such as 10r/s or 600r/m")
        return v

    @property
    def burst_or_default(self) -> int:
        """Default burst: one second's worth of requests (at least 1)."""
        if self.burst is not None:
            return self.burst
        n, unit = RATE_RE.match(self.rate).groups()  # type: ignore[union-attr]
        return max(1, int(n) if unit == "s" else int(n) // 60)


class SlackSpec(Strict):
    channel: str
    # A secret: pulumi config set --secret --path 'alerts.slack.url' https://hooks.slack.com/...
    url: str

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if not re.fullmatch(r"#?[A-Za-z0-9][A-Za-z0-9._-]{0,79}", v):
            raise ValueError("expected a Slack channel such as #ops")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.fullmatch(r"https://[^\s'\"]+", v):
            raise ValueError("expected the https:// URL of a Slack incoming webhook")
        return v


class AlertsSpec(Strict):
    """Where DigitalOcean Monitoring sends uptime and droplet alerts, and when."""

    emails: list[str] = []
    slack: SlackSpec | None = None
    cpu_percent: int = Field(90, ge=1, le=100)
    memory_percent: int = Field(90, ge=1, le=100)
    disk_percent: int = Field(85, ge=1, le=100)
    latency_ms: int = Field(2000, ge=100, le=60000)
    ssl_expiry_days: int = Field(14, ge=1, le=90)

    @field_validator("emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for e in v:
            if not EMAIL_RE.match(e):
                raise ValueError(f"{e!r} is not an email address")
        return v


class AppSpec(Strict):
    name: str
    source: str
    path: str | None = None
    workers: int = Field(1, ge=1, le=MAX_WORKERS)
    port: int | None = Field(None, ge=1024, le=65000)
    docs: bool = False
    packages: list[RPackage] = []  # name or name@version
    system_packages: list[DebPackage] = []  # Debian/Ubuntu packages, installed before `packages`
    renv_repos: Literal["cran_repo", "lockfile"] = "cran_repo"  # where an renv.lock restores from
    env: dict[str, str] = {}
    secret_env: dict[str, str] = {}
    health_path: str | None = None
    # Files to pack besides what git tracks (data kept outside git), relative to `source`
    include: list[str] = []
    # Releases and readiness
    keep_releases: int = Field(3, ge=1, le=20)
    start_timeout: int = Field(60, ge=5, le=900)
    # Proxying
    sticky: bool = False
    max_body: str = "10M"
    timeout: int = Field(60, ge=1, le=3600)
    memory_max: str | None = None
    # Access control
    auth: AuthSpec | None = None
    rate_limit: RateLimitSpec | None = None
    allow_cidrs: list[str] = []

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate_shorthand(cls, v: Any) -> Any:
        return {"rate": v} if isinstance(v, str) else v  # rate_limit: "10r/s"

    @field_validator("allow_cidrs")
    @classmethod
    def _allow(cls, v: list[str]) -> list[str]:
        return _cidr_list(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                "expected 1-32 characters of [a-z0-9-], starting and ending with a letter or digit"
            )
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v == "/":
            raise ValueError("an app cannot own '/'; use forward_root to send '/' to an app")
        segments = v.split("/")
        if not v.startswith("/") or v.endswith("/") or not all(
            PATH_SEGMENT_RE.match(s) for s in segments[1:]
        ):
            raise ValueError(
                "expected a URL path such as /api or /v1/api: leading '/', no trailing '/', "
                "segments of [A-Za-z0-9._~-] not starting with '.' or '-'"
            )
        return v

    @field_validator("packages")
    @classmethod
    def _packages(cls, v: list[str]) -> list[str]:
        names = [split_pin(p)[0] for p in v]
        if len(set(names)) != len(names):
            raise ValueError("a package is listed twice")
        return v

    @field_validator("system_packages")
    @classmethod
    def _system_packages(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a package is listed twice")
        return v

    @field_validator("env", "secret_env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not ENV_NAME_RE.match(k):
                raise ValueError(f"{k!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
            if k in RESERVED_ENV:
                raise ValueError(f"{k!r} is set by plumber-hosting itself")
            if "\n" in val or "\x00" in val:
                raise ValueError(f"the value of {k} has a newline or NUL byte")
        return v

    @field_validator("include")
    @classmethod
    def _include(cls, v: list[str]) -> list[str]:
        for i, rel in enumerate(v):
            parts = rel.replace("\\", "/").split("/")
            if not rel or rel.startswith(("/", "~")) or ".." in parts:
                raise ValueError(f"[{i}] {rel!r}: expected a path inside the app's directory, such as data/model.rds")
            if never := [p for p in parts if p in NEVER_PACKED]:
                raise ValueError(f"[{i}] {rel!r}: {never[0]} is never packed (secrets and editor state); "
                                 "put its values in env or secret_env")
        if len(set(v)) != len(v):
            raise ValueError("a path is listed twice")
        return v

    @field_validator("health_path")
    @classmethod
    def _health(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"/[A-Za-z0-9._~/?=&-]*", v):
            raise ValueError("expected a path such as /health")
        return v

    @field_validator("max_body", "memory_max")
    @classmethod
    def _size(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if not SIZE_RE.match(v):
            raise ValueError("expected a size such as 512K, 10M or 1G")
        kib = _size_kib(v)
        if info.field_name == "memory_max" and kib < MIN_MEMORY_MAX_KIB:
            raise ValueError("expected at least 64M (an R worker with plumber loaded takes about 100M)")
        if info.field_name == "max_body" and kib == 0:
            raise ValueError("0 turns nginx's limit off; expected a size such as 10M")
        if kib > MAX_SIZE_KIB:
            raise ValueError("expected at most 1024G")
        return v

    # Derived values -------------------------------------------------------
    @property
    def url_path(self) -> str:
        return self.path or f"/{self.name}"

    @property
    def base_port(self) -> int:
        if self.port is not None:
            return self.port
        return PORT_BASE + (zlib.crc32(self.name.encode()) % PORT_SLOTS) * PORT_SLOT_WIDTH

    @property
    def ports(self) -> list[int]:
        """The ports the app may listen on: its workers plus one spare."""
        return list(range(self.base_port, self.base_port + self.workers + 1))

    @property
    def memory_max_mb(self) -> int | None:
        if self.memory_max is None:
            return None
        return _size_kib(self.memory_max) // 1024


class StackSpec(Strict):
    # Droplet
    region: str = "nyc3"
    size: str = "s-1vcpu-2gb"
    # Debian 13. DigitalOcean names its Debian images debian-<major>-x64; the
    # reference corpus held no DigitalOcean page listing debian-13-x64 itself, but
    # public code passes that slug to its API/provider (e.g. Terraform's
    # `data "digitalocean_image" { slug = "debian-13-x64" }`, test-kitchen's
    # DigitalOcean driver). Override with `image` if the account lacks it.
    image: str = "debian-13-x64"
    droplet_name: str | None = None
    tags: list[str] = []
    backups: bool = False
    monitoring: bool = True
    ipv6: bool = False
    ssh_public_key: str | None = None
    ssh_key_ids: list[str] = []
    reserved_ip: bool = True
    # Access
    ssh_private_key: str | None = None
    ssh_private_key_file: str | None = None
    admin_cidrs: list[str] = ANYWHERE
    # Server software
    swap_gb: int = Field(4, ge=0, le=64)
    r_version: str = "distro"
    cran_repo: str | None = None
    # Names and TLS
    domain: str | None = None
    hostname: str = "@"
    manage_dns: bool = True
    https: HttpsSpec | None = None
    forward_root: str | None = None
    # Scale out: several droplets behind a DigitalOcean load balancer
    replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
    alerts: AlertsSpec | None = None
    # What DigitalOcean may do to a droplet (components/droplet_rules.py)
    protect: bool = True  # droplets and the reserved IP cannot be deleted or replaced
    # A one-server droplet made before the stack had its own VPC stays outside it; true moves it in (a replacement).
    move_to_vpc: bool = False
    resize_disk: bool = False  # a size change grows the disk too (irreversible)
    # Existing-host mode: one server (host) or several (hosts)
    host: HostSpec | None = None
    hosts: list[HostSpec] | None = None
    # Apps
    apps: list[AppSpec] = []

    @field_validator("region", "size", "image")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError("expected a DigitalOcean slug such as nyc3, s-1vcpu-2gb or debian-13-x64")
        return v

    @field_validator("droplet_name")
    @classmethod
    def _droplet_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,61}[A-Za-z0-9])?", v):
            raise ValueError("expected a host name of letters, digits, '.' and '-'")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for t in v:
            if not re.fullmatch(r"[A-Za-z0-9:_\-]{1,255}", t):
                raise ValueError(f"{t!r} is not a DigitalOcean tag (letters, digits, ':', '-', '_')")
        return v

    @field_validator("ssh_key_ids")
    @classmethod
    def _key_ids(cls, v: list[str]) -> list[str]:
        for k in v:
            if not re.fullmatch(r"\d+|[0-9a-f]{2}(:[0-9a-f]{2}){15}", str(k)):
                raise ValueError(f"{k!r} is not a DigitalOcean SSH key id or fingerprint")
        return [str(k) for k in v]

    @field_validator("ssh_public_key")
    @classmethod
    def _pubkey(cls, v: str | None) -> str | None:
        problem = public_key_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("admin_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("expected at least one CIDR (SSH would be unreachable)")
        return _cidr_list(v)

    @field_validator("r_version")
    @classmethod
    def _r_version(cls, v: str) -> str:
        if not R_VERSION_RE.match(v):
            raise ValueError("expected 'distro' or an R version such as 4.4.2")
        return v

    @field_validator("cran_repo")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"(https?|file)://[^\s'\"]+", v):
            raise ValueError("expected a repository URL (https://, http:// or file://)")
        return v

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str | None) -> str | None:
        if v is not None and not DOMAIN_RE.match(v):
            raise ValueError("expected a DNS zone such as example.com")
        return v

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, v: str) -> str:
        if not HOSTNAME_RE.match(v):
            raise ValueError("expected a record name such as api, or @ for the zone apex")
        return v

    # Derived values -------------------------------------------------------
    @property
    def existing_host(self) -> bool:
        return self.host is not None or self.hosts is not None

    @property
    def existing_hosts(self) -> list[HostSpec]:
        """The servers of existing-host mode, in replica order (empty for droplets)."""
        if self.hosts is not None:
            return list(self.hosts)
        return [self.host] if self.host is not None else []

    @property
    def replica_count(self) -> int:
        """How many identical servers serve the apps: droplets, or existing hosts."""
        return len(self.existing_hosts) if self.existing_host else self.replicas

    @property
    def load_balanced(self) -> bool:
        """Several droplets behind a DigitalOcean load balancer (TLS ends there)."""
        return not self.existing_host and self.replicas >= 2

    @property
    def host_tls(self) -> bool:
        """The servers themselves hold the certificate (certbot), not a load balancer."""
        return self.https is not None and not self.load_balanced

    @property
    def fqdn(self) -> str | None:
        if self.domain is None:
            return None
        return self.domain if self.hostname == "@" else f"{self.hostname}.{self.domain}"

    @property
    def rscript(self) -> str:
        if self.r_version == "distro":
            return "/usr/bin/Rscript"
        return f"/opt/R/{self.r_version}/bin/Rscript"

    @property
    def ssh_open_to_world(self) -> bool:
        return any(ipaddress.ip_network(c).prefixlen == 0 for c in self.admin_cidrs)

    def app(self, name: str) -> AppSpec:
        return next(a for a in self.apps if a.name == name)


# ---------------------------------------------------------------------------
# Loading


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _problems_from(exc: ValidationError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = _message(err)
        if err["type"] == "extra_forbidden":
            parent = loc[:-1]
            allowed = _allowed_keys(parent)
            if allowed:
                message += f"; expected one of: {', '.join(allowed)}"
        out.append((_loc(loc), message))
    return out


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    """The keys a mapping at `parent` (list indices ignored) may hold."""
    models: dict[tuple[str, ...], type[BaseModel]] = {
        (): StackSpec,
        ("apps",): AppSpec,
        ("apps", "auth"): AuthSpec,
        ("apps", "rate_limit"): RateLimitSpec,
        ("https",): HttpsSpec,
        ("host",): HostSpec,
        ("hosts",): HostSpec,
        ("alerts",): AlertsSpec,
        ("alerts", "slack"): SlackSpec,
    }
    model = models.get(tuple(str(p) for p in parent if not isinstance(p, int)))
    return sorted(model.model_fields) if model else []


def resolve_path(base_dir: Path, path: str) -> Path:
    """A path from the stack config: ~ expanded, relative to the project directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def _semantic_problems(spec: StackSpec, base_dir: Path, raw_keys: set[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    if spec.existing_host:
        mode_key = "hosts" if spec.hosts is not None else "host"
        for key in DROPLET_ONLY:
            if key not in raw_keys:
                continue
            if key == "replicas":
                out.append((key, f"only applies when the program creates droplets; with existing servers, "
                                 f"list each one under 'hosts' (replicas is their number); remove it or remove '{mode_key}'"))
            else:
                out.append((key, f"only applies when the program creates the droplet; remove it or remove '{mode_key}'"))
    elif spec.ssh_public_key is None and not spec.ssh_key_ids:
        out.append(("ssh_public_key", "required (or ssh_key_ids) so the droplet can be reached over SSH"))

    if spec.ssh_private_key is None and spec.ssh_private_key_file is None:
        out.append(("ssh_private_key", "required (a secret: pulumi config set --secret ssh_private_key < key), or ssh_private_key_file"))
    elif spec.ssh_private_key is not None and spec.ssh_private_key_file is not None:
        out.append(("ssh_private_key_file", "set either ssh_private_key or ssh_private_key_file, not both"))
    elif spec.ssh_private_key_file is not None:
        _, problem = read_private_key_file(resolve_path(base_dir, spec.ssh_private_key_file))
        if problem:
            out.append(("ssh_private_key_file", problem))
    elif problem := private_key_problem(spec.ssh_private_key):  # type: ignore[arg-type]
        out.append(("ssh_private_key", f"the key {problem}"))

    out += _scale_problems(spec)
    out += droplet_problems(spec)

    if spec.https is not None:
        if spec.domain is None:
            out.append(("https", "requires 'domain' (a certificate is issued for a name, not an IP)"))
        if not spec.https.accept_tos:
            out.append(("https.accept_tos", "must be true: you accept the ACME server's terms of service"))

    names: dict[str, int] = {}
    paths: dict[str, int] = {}
    for i, app in enumerate(spec.apps):
        key = f"apps[{i}]"
        if app.name in names:
            out.append((f"{key}.name", f"duplicate app name {app.name!r} (also apps[{names[app.name]}])"))
        names.setdefault(app.name, i)

        p = app.url_path
        if p in paths:
            out.append((f"{key}.path", f"duplicate path {p!r} (also apps[{paths[p]}])"))
        for other, j in paths.items():
            if other != p and (p.startswith(other + "/") or other.startswith(p + "/")):
                out.append((f"{key}.path", f"{p!r} nests with {other!r} of apps[{j}]; paths must not contain each other"))
        paths.setdefault(p, i)
        for reserved in RESERVED_PATHS:
            if p == reserved or p.startswith(reserved + "/"):
                out.append((f"{key}.path", f"{p!r} collides with {reserved}, which the server itself uses"))

        src = resolve_path(base_dir, app.source)
        if not src.is_dir():
            out.append((f"{key}.source", f"no such directory: {src}"))
        elif not any((src / e).is_file() for e in ENTRYPOINTS):
            out.append((f"{key}.source", f"{src} holds neither plumber.R nor entrypoint.R"))
        else:
            if problem := _renv_lock_problem(src):
                out.append((f"{key}.source", problem))
            out += _bundle_problems(key, src, app)

        clash = set(app.env) & set(app.secret_env)
        if clash:
            out.append((f"{key}.secret_env", f"{', '.join(sorted(clash))} also set in env"))
        if app.ports[-1] >= EPHEMERAL_PORTS:
            out.append((
                f"{key}.port",
                f"ports {app.ports[0]}-{app.ports[-1]} (port + workers + a spare) reach Linux's ephemeral range; "
                f"expected the last one below {EPHEMERAL_PORTS}",
            ))

    # Port ranges never overlap, so no app's change moves another.
    for i, a in enumerate(spec.apps):
        for j in range(i):
            b = spec.apps[j]
            if a.name == b.name:
                continue
            if set(a.ports) & set(b.ports):
                out.append(
                    (
                        f"apps[{i}].port",
                        f"ports {a.ports[0]}-{a.ports[-1]} of {a.name!r} overlap {b.ports[0]}-{b.ports[-1]} "
                        f"of {b.name!r} (apps[{j}]); set 'port' on one of them to a free range",
                    )
                )

    if spec.forward_root is not None and spec.forward_root not in names:
        known = ", ".join(names) or "none"
        out.append(("forward_root", f"names no app {spec.forward_root!r}; apps are: {known}"))
    return out


def _bundle_problems(key: str, src: Path, app: AppSpec) -> list[tuple[str, str]]:
    """`include` entries that are not there, and an app git would pack without its entrypoint."""
    out: list[tuple[str, str]] = []
    top = src.resolve()
    usable: list[str] = []
    for j, rel in enumerate(app.include):
        path = src / rel
        if not path.exists():
            out.append((f"{key}.include[{j}]", f"no such file or directory in {src}: {rel}"))
        elif not path.resolve().is_relative_to(top):
            out.append((f"{key}.include[{j}]", f"{rel} leads outside {src} (a symlink?); expected a path inside it"))
        else:
            usable.append(rel)
    try:
        sel = select_files(src, usable)
    except BundleError as err:
        return [*out, (f"{key}.source", str(err))]
    if sel.in_git and not any(e in sel.names for e in ENTRYPOINTS):
        out.append((f"{key}.source", f"git tracks neither plumber.R nor entrypoint.R in {src}, and only the files "
                                     "git tracks are packed; git add it"))
    return out


def _renv_lock_problem(src: Path) -> str | None:
    """An renv.lock the server's renv could not read: said now, not after the upload."""
    lock = src / RENV_LOCK
    if not lock.is_file():
        return None
    try:
        doc = json.loads(lock.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"{RENV_LOCK} is not valid JSON ({err}); make it again with renv::snapshot()"
    if not isinstance(doc, dict) or not isinstance(doc.get("Packages", {}), dict):
        return f"{RENV_LOCK} is not an renv lockfile (expected an object with 'Packages'); make it with renv::snapshot()"
    return None


def _scale_problems(spec: StackSpec) -> list[tuple[str, str]]:
    """Several servers: existing hosts, or droplets behind a load balancer; alerts."""
    out: list[tuple[str, str]] = []
    if spec.hosts is not None:
        if spec.host is not None:
            out.append(("hosts", "set either 'host' (one server) or 'hosts' (several), not both"))
        if not spec.hosts:
            out.append(("hosts", "expected at least one server"))
        seen: dict[tuple[str, int], int] = {}
        for i, h in enumerate(spec.hosts):
            where = (h.address, h.port)
            if where in seen:
                out.append((f"hosts[{i}].address", f"{h.address}:{h.port} is also hosts[{seen[where]}]"))
            seen.setdefault(where, i)
        if len(spec.hosts) >= 2:
            if spec.https is not None:
                out.append(("https", "with several existing hosts, terminate TLS at your own load balancer; "
                                     "each host cannot pass an HTTP-01 challenge for the shared name"))
            if spec.domain is not None and spec.manage_dns:
                out.append(("manage_dns", "with several existing hosts, point the domain at your load balancer "
                                          "yourself; set manage_dns: false"))
    if spec.load_balanced and spec.https is not None:
        if spec.https.acme_server != LETSENCRYPT:
            out.append(("https.acme_server", "with replicas >= 2 the load balancer holds a DigitalOcean "
                                             "Let's Encrypt certificate; remove acme_server"))
        if spec.https.acme_ca_cert is not None:
            out.append(("https.acme_ca_cert", "with replicas >= 2 the load balancer holds a DigitalOcean "
                                              "Let's Encrypt certificate; remove acme_ca_cert"))
    if spec.alerts is not None and not spec.existing_host:
        if not spec.alerts.emails and spec.alerts.slack is None:
            out.append(("alerts", "expected 'emails' or 'slack' (somewhere to send the alerts)"))
        if not spec.monitoring:
            out.append(("monitoring", "must be true with 'alerts': memory and disk alerts need the "
                                      "DigitalOcean metrics agent"))
    return out


def _decode(key: str, raw: Any) -> Any:
    if not isinstance(raw, str) or key in TEXT_KEYS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def raw_config() -> dict[str, Any]:
    """Every key under the project namespace, as given (JSON decoded where typed)."""
    merged: dict[str, Any] = {}
    merged.update(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    out: dict[str, Any] = {}
    prefix = NAMESPACE + ":"
    for full, value in merged.items():
        if full.startswith(prefix):
            key = full[len(prefix) :]
            out[key] = _decode(key, value)
    return out


def _json_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Structured keys (lists, objects) the CLI handed over as text that is not JSON: a value set
    by hand with ``pulumi config set key '[...'`` (the CLI writes YAML values as JSON itself)."""
    out: list[tuple[str, str]] = []
    for key, value in raw.items():
        if key in TEXT_KEYS or not isinstance(value, str) or not value.lstrip().startswith(("[", "{")):
            continue
        try:
            json.loads(value)
        except ValueError as err:
            out.append((key, f"is not valid JSON ({err}); set it in the stack file as YAML, or with "
                             f"pulumi config set --path '{key}...' one value at a time"))
    return out


def validate(raw: dict[str, Any], base_dir: Path) -> StackSpec:
    """Validate a raw config mapping; raise ConfigError listing every problem."""
    if problems := _json_problems(raw):
        raise ConfigError(_format(problems))
    try:
        spec = StackSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format(_problems_from(exc))) from None
    problems = _semantic_problems(spec, base_dir, set(raw))
    if problems:
        raise ConfigError(_format(problems))
    return spec


def format_problems(problems: list[tuple[str, str]]) -> str:
    return _format(problems)


def _format(problems: list[tuple[str, str]]) -> str:
    lines = [f"  {NAMESPACE}:{path}: {msg}" for path, msg in problems]
    return "invalid stack config:\n" + "\n".join(lines)


def load_spec(base_dir: Path) -> StackSpec:
    spec = validate(raw_config(), base_dir)
    if problem := agent_problem():  # the environment every remote command inherits
        raise ConfigError(f"invalid environment:\n  SSH_AUTH_SOCK: {problem}")
    if pulumi.runtime.is_dry_run():  # the preview names what each bundle leaves out
        for i, app in enumerate(spec.apps):
            src = resolve_path(base_dir, app.source)
            sel = select_files(src, app.include)
            for level, message in selection_notes(f"{NAMESPACE}:apps[{i}] ({app.name})", src, sel):
                (pulumi.log.warn if level == "warn" else pulumi.log.info)(message)
    if spec.ssh_open_to_world:
        pulumi.log.warn(
            f"{NAMESPACE}:admin_cidrs allows SSH from anywhere; set it to your office/VPN CIDRs"
        )
    return spec


def private_key_text(spec: StackSpec, base_dir: Path) -> str:
    """The key the remote commands use, normalized (:func:`normalize_private_key`): the secret and
    a file holding the same key give byte-identical connection inputs."""
    if spec.ssh_private_key is not None:
        return normalize_private_key(spec.ssh_private_key)
    assert spec.ssh_private_key_file is not None
    text, problem = read_private_key_file(resolve_path(base_dir, spec.ssh_private_key_file))
    if text is None:  # validate() checked it; the file changed since
        raise ConfigError(_format([("ssh_private_key_file", problem or "unreadable")]))
    return normalize_private_key(text)

