"""The first real `pulumi up` on DigitalOcean must not fail or wipe a server (issue 12).

Each test runs the real ``__main__.py`` under Pulumi's mocks against a mock
DigitalOcean account (``tests.program.MockCloud``): it answers the provider's
data sources and gives a droplet a new id whenever a replace-forcing input
changes (ForceNew in digitalocean/droplet/resource_droplet.go), so "was the
server replaced" is a question about ids across runs, as on a real account.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from typing import Any

import pytest

from tests.conftest import local_overrides
from tests.program import MockCloud, ProgramRun, run_program, stack_config

DO = "digitalocean:index/"
DROPLET = f"{DO}droplet:Droplet"
SSH_KEY = f"{DO}sshKey:SshKey"
CMD = "command:remote:Command"
SCALE_SECRETS = ("ssh_private_key", "alerts")


def config(stack: str, **overrides: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(stack_config(stack))
    cfg.update(overrides)
    return cfg


def run(stack: str, cloud: MockCloud | None = None, *, name: str | None = None, **overrides: Any) -> ProgramRun:
    return run_program(config(stack, **overrides), stack=name or stack, cloud=cloud, secret_keys=SCALE_SECRETS)


def droplet_id(cloud: MockCloud, stack: str, name: str = "server-droplet") -> str:
    """The id the mock account holds for a droplet resource after the last run."""
    return cloud.droplets[f"{stack}::{name}"][0]


# ---------------------------------------------------------------- 1. SSH keys


# The example stacks' key as `ssh-keygen -E md5 -lf` prints it, and as DigitalOcean lists it.
FP = "66:f9:fc:5d:b6:b7:38:a6:b0:42:8c:18:80:a6:49:ec"


def public_key(stack: str) -> str:
    return str(stack_config(stack)["ssh_public_key"])


def test_fingerprint_is_digitaloceans_md5_format() -> None:
    from components.account import fingerprint

    assert fingerprint(public_key("dev")) == FP


def test_a_key_already_on_the_account_is_reused_not_uploaded() -> None:
    fp = FP
    cloud = MockCloud(ssh_keys=[{"id": 41, "name": "laptop", "fingerprint": fp, "publicKey": public_key("dev")}])
    r = run("dev", cloud)
    assert not r.of_type(SSH_KEY), "uploading a key the account holds fails with 422"
    assert r.named("server-droplet").inputs["sshKeys"] == [fp]


def test_a_new_key_is_uploaded_and_the_droplet_waits_for_it() -> None:
    r = run("dev", MockCloud())
    key = r.named("server-key")
    assert key.inputs["publicKey"] == public_key("dev") and key.inputs["name"] == "plumber-dev-deploy-plumber-hosting-dev"
    droplet = r.named("server-droplet")
    assert droplet.inputs["sshKeys"] == [FP]
    assert key.urn in droplet.dependencies


def test_two_stacks_with_one_key_in_one_account() -> None:
    """dev uploads the key; prod (same key) reuses it; dev keeps owning it; neither droplet changes."""
    cloud = MockCloud()
    dev = run("dev", cloud)
    assert dev.of_type(SSH_KEY)
    assert [k["name"] for k in cloud.ssh_keys] == ["plumber-dev-deploy-plumber-hosting-dev"]  # what the account holds after dev's `up`
    prod = run("prod", cloud)
    assert not prod.of_type(SSH_KEY)
    dev_again = run("dev", cloud)
    assert dev_again.of_type(SSH_KEY), "dev keeps declaring the key it uploaded (else Pulumi would delete it)"
    assert dev_again.named("server-droplet").inputs["sshKeys"] == dev.named("server-droplet").inputs["sshKeys"]
    assert cloud.replaced == []


# ------------------------------------------------------------- 3. the project


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_project_lists_no_reserved_ip(stack: str) -> None:
    """The API lists a reserved IP as do:floatingip:, the provider sends do:reservedip: (#1264, #1031)."""
    r = run(stack)
    resources = r.named("project-group").inputs["resources"]
    assert resources and all(u.startswith("do:droplet:") for u in resources), resources
    assert r.of_type(f"{DO}reservedIp:ReservedIp"), "the stack still has its reserved IP"


# ------------------------------------------------------------------- 5. tags

TAG_RE = re.compile(r"^[a-zA-Z0-9:\-_]{1,255}$")  # digitalocean/tag/tags.go
DROPLET_NAME_RE = re.compile(r"^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$")  # DigitalOcean host names


@pytest.mark.parametrize(("stack", "replicas"), [("prod.eu", 1), ("prod.eu", 3), ("team_a.dev", 2)])
def test_every_derived_tag_and_name_is_valid(stack: str, replicas: int) -> None:
    overrides: dict[str, Any] = {"replicas": replicas}
    cfg = config("scale", **overrides)
    cfg.pop("droplet_name")
    r = run_program(cfg, stack=stack, secret_keys=SCALE_SECRETS)
    tags = [t for d in r.of_type(DROPLET) for t in d.inputs["tags"]]
    tags += [t.inputs["name"] for t in r.of_type(f"{DO}tag:Tag")]
    tags += [t for f in r.of_type(f"{DO}firewall:Firewall") for t in f.inputs.get("tags") or []]
    assert tags and all(TAG_RE.match(t) for t in tags), tags
    assert any(t.startswith("stack-prod") or t.startswith("stack-team") for t in tags)
    assert all(DROPLET_NAME_RE.match(d.inputs["name"]) for d in r.of_type(DROPLET))


# --------------------------------------------------- 7. TLS at the load balancer


def test_https_behind_a_load_balancer_needs_dns_in_digitalocean() -> None:
    from components.config import ConfigError

    with pytest.raises(ConfigError) as err:
        run("scale", manage_dns=False)
    message = str(err.value)
    assert "plumber-hosting:manage_dns:" in message
    assert "replicas >= 2" in message and "https" in message and "DigitalOcean DNS" in message
    # one server gets its own certificate with certbot: fine without DigitalOcean DNS
    assert run("scale", replicas=1, manage_dns=False).named("site-nginx")
    # no https: fine
    cfg = config("scale", manage_dns=False)
    cfg.pop("https")
    assert run_program(cfg, stack="scale", secret_keys=SCALE_SECRETS).named("lb-balancer")


# ------------------------------------------------------------------ 4. scaling


@pytest.mark.parametrize(("before", "after"), [(1, 2), (2, 1), (1, 3), (3, 1), (2, 5)])
def test_a_replicas_change_replaces_no_droplet(before: int, after: int) -> None:
    """From the first `up` every droplet is in the stack's VPC: 1 -> 2 does not move the first."""
    cloud = MockCloud()
    first = run("scale", cloud, replicas=before)
    ids = {k: v[0] for k, v in cloud.droplets.items()}
    second = run("scale", cloud, replicas=after)
    assert cloud.replaced == [], f"{before} -> {after} replicas replaced {cloud.replaced}"
    kept = {k: v[0] for k, v in cloud.droplets.items() if k in ids}
    assert kept == ids
    # the VPC is the same resource (same URN, same inputs) whatever the number of droplets
    vpcs = [[(v.urn, v.inputs) for v in r.of_type(f"{DO}vpc:Vpc")] for r in (first, second)]
    assert len(vpcs[0]) == 1 and vpcs[0] == vpcs[1]
    assert all(d.inputs.get("vpcUuid") for r in (first, second) for d in r.of_type(DROPLET))


def test_a_scaled_out_stack_keeps_its_vpc() -> None:
    """Stacks made when the VPC was the load balancer's child `lb-vpc` keep it (an alias, not a new VPC)."""
    r = run("scale", replicas=3)
    vpc = r.named("network-vpc")
    assert ("lb-vpc", "urn:pulumi:scale::plumber-hosting::plumber-hosting:index:LoadBalancer::lb") in vpc.aliases
    assert vpc.inputs["name"] == "plumber-scale-vpc-plumber-hosting-scale" and vpc.inputs["region"] == "fra1"


# ------------------------------------------------------- 2. a replaced droplet

ANOTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOu3bLzX7oTJbJ6rUQ5l9b3a3nq0zjfj0uBVtXqO6S2P other@laptop"
# (stack, change) pairs that make DigitalOcean create a new droplet
REPLACING: list[tuple[str, dict[str, Any]]] = [
    ("dev", {"image": "ubuntu-24-04-x64"}),
    ("dev", {"region": "ams3"}),
    ("dev", {"ssh_public_key": ANOTHER_KEY}),
    ("dev", {"monitoring": False}),
    ("prod", {"ipv6": False}),
    ("scale", {"image": "ubuntu-24-04-x64"}),
]


def commands_by_name(r: ProgramRun) -> dict[str, dict[str, Any]]:
    return {c.name: c.inputs for c in r.commands}


@pytest.mark.parametrize(("stack", "change"), REPLACING, ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_a_replaced_droplet_gets_every_command_again(stack: str, change: dict[str, Any]) -> None:
    """The commands reach a replaced droplet at the same (reserved) address: each must still change."""
    cloud = MockCloud()
    before = run(stack, cloud)
    after = run(stack, cloud, protect=False, **change)
    assert cloud.replaced, f"{change} should replace a droplet (ForceNew in resource_droplet.go)"
    replaced = {k.split("::")[1] for k in cloud.replaced}
    old, new = commands_by_name(before), commands_by_name(after)
    for name, inputs in new.items():
        server = "server-droplet" if "@" not in name else f"server@{name.split('@')[1].split('-')[0]}-droplet"
        if server not in replaced or name.endswith("-resize-leave"):
            continue  # (the resize drain runs on the droplet as it was: tests/unit/test_resize.py)
        # a changed create/update (never a changed trigger): Pulumi runs `update` on the new droplet,
        # and no delete of the old resource runs over the same address
        assert inputs["create"] != old[name]["create"], f"{name} would not run on the new droplet"
        assert inputs["update"] == inputs["create"] and "triggers" not in inputs
        assert f"droplet {cloud.droplets[f'{stack}::{server}'][0]}" in inputs["create"]


@pytest.mark.parametrize("stack", ["dev", "prod", "scale"])
def test_every_command_names_its_own_droplet(stack: str) -> None:
    cloud = MockCloud()
    r = run(stack, cloud)
    assert r.commands
    for c in r.commands:
        replica = c.name.split("@")[1].split("-")[0] if "@" in c.name else None
        server = f"server@{replica}-droplet" if replica else "server-droplet"
        first_line = c.inputs["create"].split("\n", 1)[0]
        assert re.fullmatch(rf"# plumber-hosting: on droplet {cloud.droplets[f'{stack}::{server}'][0]}(, size .*)?",
                            first_line), (c.name, first_line)


def test_an_in_place_change_runs_no_command_again() -> None:
    cloud = MockCloud()
    before = commands_by_name(run("dev", cloud))
    after = commands_by_name(run("dev", cloud, backups=True, tags=["dev", "team"]))
    assert cloud.replaced == []
    assert after == before


@pytest.mark.parametrize("stack", ["dev", "prod", "scale"])
def test_droplets_and_the_reserved_ip_are_protected_by_default(stack: str) -> None:
    r = run(stack)
    guarded = [*r.of_type(DROPLET), *r.of_type(f"{DO}reservedIp:ReservedIp")]
    assert guarded and all(x.protect for x in guarded)
    lifted = run(stack, protect=False)
    assert not any(x.protect for x in [*lifted.of_type(DROPLET), *lifted.of_type(f"{DO}reservedIp:ReservedIp")])


@pytest.mark.parametrize(("stack", "change", "key"), [
    ("dev", {"image": "ubuntu-24-04-x64"}, "image"),
    ("dev", {"region": "ams3"}, "region"),
    ("dev", {"monitoring": False}, "monitoring"),
    ("prod", {"ipv6": False}, "ipv6"),
    ("scale", {"region": "ams3"}, "region"),
])
def test_a_change_that_would_replace_a_protected_droplet_says_what_to_do(
    stack: str, change: dict[str, Any], key: str
) -> None:
    from components.config import ConfigError

    cloud = MockCloud()
    run(stack, cloud)
    with pytest.raises(ConfigError) as err:
        run(stack, cloud, **change)
    message = str(err.value)
    assert f"plumber-hosting:{key}:" in message and "replaces droplet" in message
    assert "pulumi config set plumber-hosting:protect false" in message
    assert cloud.replaced == []
    # an in-place change on the same account is fine
    run(stack, cloud, size="s-2vcpu-4gb")



def test_a_droplet_made_before_the_stack_had_its_vpc_stays_where_it_is() -> None:
    """A one-server stack from before components/network.py has its droplet in the region's default VPC.
    vpc_uuid is ForceNew but Optional+Computed: left out it is no change, so the droplet stays (a warning),
    whatever `protect` says; scaling out, which needs it in the VPC, is an error naming what to do, and with
    protect: false it moves the droplet (a replacement the user's own config asked for)."""
    from components.config import ConfigError

    cloud = MockCloud()
    run("dev", cloud)
    rid, inputs = cloud.droplets["dev::server-droplet"]
    cloud.droplets["dev::server-droplet"] = (rid, {k: v for k, v in inputs.items() if k != "vpcUuid"})  # as made then
    again = run("dev", cloud)
    assert "vpcUuid" not in again.named("server-droplet").inputs
    assert cloud.replaced == []
    vpc = "plumber-dev-vpc-plumber-hosting-dev"
    assert any(f"predates the stack's VPC {vpc}" in w for w in again.warnings), again.warnings
    with pytest.raises(ConfigError) as err:
        run("dev", cloud, replicas=2, https=None)
    assert f"plumber-hosting:replicas: droplet plumber-dev is not in the stack's VPC {vpc}" in str(err.value)
    assert "pulumi config set plumber-hosting:protect false" in str(err.value)
    assert cloud.replaced == []
    lifted = run("dev", cloud, protect=False)  # protect off alone changes nothing (README tells users to set it)
    assert cloud.replaced == [] and "vpcUuid" not in lifted.named("server-droplet").inputs
    run("dev", cloud, protect=False, replicas=2, https=None)  # scaling out, on purpose: moved into the VPC
    assert cloud.replaced == ["dev::server-droplet"]


def test_move_to_vpc_moves_a_one_server_droplet_on_purpose() -> None:
    """The explicit opt-in (issue 23 point 1): with protect on it is refused naming the key; off, it moves."""
    from components.config import ConfigError

    cloud = MockCloud()
    run("dev", cloud)
    rid, inputs = cloud.droplets["dev::server-droplet"]
    cloud.droplets["dev::server-droplet"] = (rid, {k: v for k, v in inputs.items() if k != "vpcUuid"})
    with pytest.raises(ConfigError) as err:
        run("dev", cloud, move_to_vpc=True)
    assert "plumber-hosting:move_to_vpc: droplet plumber-dev is not in the stack's VPC" in str(err.value)
    assert cloud.replaced == []
    moved = run("dev", cloud, move_to_vpc=True, protect=False)
    assert cloud.replaced == ["dev::server-droplet"]
    assert "vpcUuid" in moved.named("server-droplet").inputs
    run("dev", cloud, move_to_vpc=True, protect=False)  # in the VPC now: nothing more happens
    assert cloud.replaced == ["dev::server-droplet"]


# ----------------------------------------------------------------- 6. resizing


def test_a_resize_keeps_the_disk_unless_asked() -> None:
    assert run("dev").named("server-droplet").inputs["resizeDisk"] is False  # provider default: true
    assert run("dev", resize_disk=True).named("server-droplet").inputs["resizeDisk"] is True


@pytest.mark.parametrize("n", [2, 3, 5])
def test_droplet_changes_roll_one_replica_at_a_time(n: int) -> None:
    """Droplet i changes only once replica i-1 is back in the rotation (its join re-ran after its own change)."""
    cloud = MockCloud()
    before = run("scale", cloud, replicas=n)
    after = run("scale", cloud, replicas=n, size="s-2vcpu-4gb")
    assert cloud.replaced == []  # a resize is in place
    urn = {x.name: x.urn for x in after.resources}

    def rep(base: str, i: int) -> str:
        return base if i == 1 else f"{base}@{i}"

    for i in range(2, n + 1):
        droplet = after.named(f"{rep('server', i)}-droplet")
        assert urn[f"{rep('rotation', i - 1)}-join"] in droplet.dependencies, f"droplet {i} does not wait for {i - 1}"
    for i in range(1, n + 1):
        join = after.named(f"{rep('rotation', i)}-join")
        assert urn[f"{rep('server', i)}-droplet"] in join.dependencies
    # what the size change runs: each replica leaves the rotation first (issue 23 point 9, tests/unit/test_resize.py)
    # and its join again after (waits until it serves again), nothing else
    old, new = commands_by_name(before), commands_by_name(after)
    changed = sorted(name for name in new if new[name] != old.get(name))
    assert changed == sorted(f"{rep('rotation', i)}-{step}" for i in range(1, n + 1) for step in ("join", "resize-leave"))
    join = after.named("rotation@2-join").inputs["create"]
    assert "until [ -e /run/plumber-hosting-healthz/ok ]" in join
    assert "sleep 30" in join  # the load balancer's 3 healthy checks, 10 s apart


# ------------------------------------------------------------------- 8. IPv6


def test_aaaa_only_for_an_address_the_server_holds() -> None:
    """The AAAA record takes its value from a check on the server, not from the droplet's attributes."""

    def engine(res: Any) -> dict[str, str]:
        return {"stdout": "2001:db8::10"} if res.name == "server-ipv6" else {}

    r = run_program(config("prod"), stack="prod", on_register=engine)
    check = r.named("server-ipv6")
    aaaa = next(x for x in r.of_type(f"{DO}dnsRecord:DnsRecord") if x.inputs["type"] == "AAAA")
    assert check.urn in aaaa.dependencies and aaaa.inputs["value"] == "2001:db8::10"
    script = check.inputs["create"]
    assert "ip -6 -o addr show scope global to \"$ADDR/128\"" in script and "ADDR=2001:db8::10" in script
    assert "no AAAA record is published" in script
    # without ipv6 there is nothing to check
    assert not [c for c in run("dev").commands if c.name == "server-ipv6"]


def test_the_ipv6_check_fails_for_an_address_the_server_does_not_hold(tmp_path: Any) -> None:
    import subprocess

    from components.render import render

    script = tmp_path / "check.sh"
    script.write_text(render("scripts/check-ipv6.sh.j2", address="2001:db8:dead::1", timeout=1))
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "does not hold its address 2001:db8:dead::1" in proc.stderr and "ipv6 false" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a private network namespace")
def test_the_ipv6_check_answers_the_address_the_server_holds(tmp_path: Any) -> None:
    """In a network namespace of its own holding the address (written differently), the check prints it."""
    import subprocess

    from components.render import render

    script = tmp_path / "check.sh"
    script.write_text(render("scripts/check-ipv6.sh.j2", address="2001:0db8:dead:0::1", timeout=5))
    setup = "ip link set lo up && ip -6 addr add 2001:db8:dead::1/128 dev lo nodad && exec bash \"$0\""
    proc = subprocess.run(["unshare", "-n", "bash", "-c", setup, str(script)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "2001:0db8:dead:0::1\n"


# ------------------------------------------------------- 9. failure messages

SECRETS = {
    "API_TOKEN": "tok-9f8e7d6c5b4a",
    "DB_URL": "postgres://app:tok-9f8e7d6c5b4a@db.internal/app",  # holds the token: shown whole
    "ODD": 'q"uo\\te $HOME `x` & | ; *',
}


def _env_file_on_server(deploy_stdin: str) -> str:
    """app.env as the deploy writes it: the deploy's standard input is the env file itself."""
    return deploy_stdin


def test_a_failed_deploy_shows_no_secret_value(tmp_path: Any) -> None:
    """The worker's journal tail a failed health check prints goes through redact_secrets first."""
    import subprocess

    from tests.static.rendered import script_of

    cfg = config("dev")
    cfg["apps"][0]["secret_env"] = dict(SECRETS)
    r = run_program(cfg, stack="dev", secret_keys=("ssh_private_key", "apps"))
    deploy = r.named("hello-deploy").inputs
    script = script_of(deploy["create"])
    assert not any(v in deploy["create"] for v in SECRETS.values()), "a secret on the command line"
    # the one place a script prints what an app wrote: the failed worker's journal
    journal_lines = [line for line in script.splitlines() if "journalctl -u \"$u\"" in line]
    assert journal_lines and all('| redact_secrets "$ENV_FILE" "$(backup "$ENV_FILE")" >&2' in x for x in journal_lines)

    func = re.search(r"^redact_secrets\(\) \{\n.*?^\}\n", script, re.S | re.M)
    assert func, "no redact_secrets in the deploy script"
    env = tmp_path / "hello.env"
    env.write_text(_env_file_on_server(deploy["stdin"]))
    old = tmp_path / "old.env"  # the previous release's env file, kept for a rollback
    old.write_text('# Managed by plumber-hosting\nGREETING="hi"\n# secret_env: ...\nAPI_TOKEN="tok-old-0123"\n')
    journal = (
        f"Running plumber API at http://127.0.0.1:10000 with token {SECRETS['API_TOKEN']}\n"
        f"connecting to {SECRETS['DB_URL']} failed\n"
        f"odd: {SECRETS['ODD']}\n"
        "the previous token was tok-old-0123; GREETING is hello from dev\n"
    )
    proc = subprocess.run(
        ["bash", "-c", func.group(0) + 'redact_secrets "$1" "$2" "$3"', "redact", str(env), str(old),
         str(tmp_path / "missing.env")],
        input=journal, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for value in [*SECRETS.values(), "tok-old-0123"]:
        assert value not in out
    assert out.splitlines() == [
        "Running plumber API at http://127.0.0.1:10000 with token [secret API_TOKEN]",
        "connecting to [secret DB_URL] failed",
        "odd: [secret ODD]",
        "the previous token was [secret API_TOKEN]; GREETING is hello from dev",  # plain env stays readable
    ]


def test_a_file_copied_to_a_server_is_copied_again_to_a_new_droplet() -> None:
    """A CopyToRemote has no script to carry the droplet's identity: its triggers do (a new copy)."""
    import pulumi
    from pulumi_command import remote

    from components.fleet import runs_on
    from tests.program import _Mocks

    seen: dict[str, Any] = {}

    class Recorder(_Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
            seen[args.name] = args.inputs
            return super().new_resource(args)

    pulumi.runtime.set_mocks(Recorder(), project="plumber-hosting", stack="dev", preview=False)

    class Holder(pulumi.ComponentResource):
        def __init__(self) -> None:
            super().__init__("test:index:Holder", "holder", None,
                             pulumi.ResourceOptions(transformations=runs_on(pulumi.Output.from_input("droplet 7"))))
            conn = remote.ConnectionArgs(host="192.0.2.1")
            remote.CopyToRemote("copy", connection=conn, source=pulumi.FileAsset(__file__),
                                remote_path="/tmp/x", triggers=["v1"], opts=pulumi.ResourceOptions(parent=self))
            remote.Command("cmd", connection=conn, create="true", opts=pulumi.ResourceOptions(parent=self))

    @pulumi.runtime.test
    def declare() -> None:
        Holder()

    declare()
    assert seen["copy"]["triggers"] == ["v1", "droplet 7"]
    assert seen["cmd"]["create"] == "# plumber-hosting: on droplet 7\ntrue"


# ------------------------------------------------- issue 23: existing stacks, shared accounts

VPC = f"{DO}vpc:Vpc"


def as_made_by_an_earlier_version(cloud: MockCloud, stack: str = "dev", **inputs: Any) -> None:
    """The live droplet as an earlier version made it: other inputs (e.g. the then-default image), no VPC,
    and outputs that recorded no ids (``owned_ids`` did not exist)."""
    rid, old = cloud.droplets[f"{stack}::server-droplet"]
    made = {k: v for k, v in old.items() if k != "vpcUuid"}
    made.update(inputs)
    cloud.droplets[f"{stack}::server-droplet"] = (rid, made)
    cloud.stack_outputs[stack] = {k: v for k, v in cloud.stack_outputs[stack].items() if k != "owned_ids"}


@pytest.mark.parametrize("protect", [True, False])
def test_an_upgrade_keeps_a_droplet_made_from_the_old_default_image(protect: bool) -> None:
    """Point 1: a droplet made from debian-12-x64 when that was the default, in the region's default VPC, with
    no `image` in the config: the new default (debian-13-x64) neither replaces it nor blocks the `up`,
    whatever `protect` says; its VPC stays too."""
    cloud = MockCloud()
    cfg = config("dev", protect=protect)
    cfg.pop("image")  # the user never set it: the program's default applies
    run_program(cfg, stack="dev", cloud=cloud, secret_keys=SCALE_SECRETS)
    as_made_by_an_earlier_version(cloud, image="debian-12-x64")
    rid = droplet_id(cloud, "dev")
    after = run_program(cfg, stack="dev", cloud=cloud, secret_keys=SCALE_SECRETS)  # raised ConfigError before
    droplet = after.named("server-droplet")
    assert droplet.ignore_changes == ["image"], "the engine keeps the image the droplet was made with"
    assert "vpcUuid" not in droplet.inputs
    assert cloud.replaced == [] and droplet_id(cloud, "dev") == rid
    assert cloud.droplets["dev::server-droplet"][1]["image"] == "debian-12-x64"
    # a new stack gets the new default
    fresh = MockCloud()
    run_program(cfg, stack="dev", cloud=fresh, secret_keys=SCALE_SECRETS)
    assert fresh.droplets["dev::server-droplet"][1]["image"] == "debian-13-x64"


def test_an_image_the_user_sets_still_replaces_the_droplet() -> None:
    """Point 1: only the user's own config changes the image: set explicitly, it is no longer ignored."""
    cloud = MockCloud()
    cfg = config("dev")
    cfg.pop("image")
    run_program(cfg, stack="dev", cloud=cloud, secret_keys=SCALE_SECRETS)
    as_made_by_an_earlier_version(cloud, image="debian-12-x64")
    same = run("dev", cloud, image="debian-12-x64")  # naming the image it has: no change
    assert not same.named("server-droplet").ignore_changes and cloud.replaced == []
    from components.config import ConfigError

    with pytest.raises(ConfigError) as err:
        run("dev", cloud, image="debian-13-x64")
    assert "plumber-hosting:image: debian-12-x64 -> debian-13-x64 replaces droplet plumber-dev" in str(err.value)
    run("dev", cloud, image="debian-13-x64", protect=False)
    assert cloud.replaced == ["dev::server-droplet"]


def test_destroy_succeeds_on_a_stack_that_was_first_in_its_region() -> None:
    """Point 2: the first VPC of a region becomes its default, which the API refuses to delete (403). The stack
    makes the region's default first (retain_on_delete), so its own VPC is deletable and destroy succeeds."""
    cloud = MockCloud(new_account=True)
    first = run("dev", cloud)
    default = first.named("network-region-default")
    assert default.retain_on_delete and default.inputs == {
        "name": "plumber-hosting-default-nyc3", "region": "nyc3",
        "description": "plumber-hosting: the region's default VPC (DigitalOcean cannot delete it); left empty"}
    vpc = first.named("network-vpc")
    assert not vpc.retain_on_delete and default.urn in vpc.dependencies
    again = run("dev", cloud)  # recorded: declared again (same inputs), never a second one
    assert [(v.urn, v.inputs) for v in again.of_type(VPC)] == [(v.urn, v.inputs) for v in first.of_type(VPC)]
    assert cloud.destroy("dev") == []
    assert set(cloud.vpcs.values()) == {"plumber-hosting-default-nyc3"}, "the region's default is left"
    # another stack in that region now finds a default VPC: it makes none
    assert not [v for v in run("dev", cloud, name="staging").of_type(VPC) if v.name != "network-vpc"]


def test_destroy_leaves_a_stack_vpc_that_became_the_region_default() -> None:
    """Point 2: a stack an earlier version made as the first in its region has the default VPC as its own:
    it is kept with retain_on_delete, so destroy succeeds and leaves it on the account."""
    from tests.program import _stable_id

    cloud = MockCloud(new_account=True)
    vid = _stable_id("dev", VPC, "network-vpc")
    cloud.vpcs[vid], cloud.vpc_regions[vid], cloud.default_vpcs["nyc3"] = "plumber-dev-vpc", "nyc3", vid
    cloud.stack_outputs["dev"] = {"ip": "198.51.100.7"}  # an earlier version's outputs: no owned_ids
    r = run("dev", cloud)
    assert r.named("network-vpc").retain_on_delete
    assert [v.name for v in r.of_type(VPC)] == ["network-vpc"]
    assert r.named("network-vpc").inputs["name"] == "plumber-dev-vpc", "kept: it outlives the stack"
    assert cloud.destroy("dev") == []
    assert cloud.vpcs[vid] == "plumber-dev-vpc"
    # the same stack made again: its own VPC (deletable), beside the region's default it left
    again = run("dev", cloud)
    assert again.named("network-vpc").inputs["name"] == "plumber-dev-vpc-plumber-hosting-dev"
    assert not again.named("network-vpc").retain_on_delete
    assert cloud.destroy("dev") == []


def test_two_stacks_with_one_droplet_name_both_up() -> None:
    """Point 3: the same droplet_name in two stacks: distinct VPC names (unique per account), and neither
    reads the other's droplet as its own (its monitoring differs: read as its own, a replacement error)."""
    cloud = MockCloud()
    dev = run("dev", cloud, monitoring=False)
    staging = run("dev", cloud, name="staging")  # same config file, same droplet_name
    names = {r.named("network-vpc").inputs["name"] for r in (dev, staging)}
    assert names == {"plumber-dev-vpc-plumber-hosting-dev", "plumber-dev-vpc-plumber-hosting-staging"}
    assert staging.named("server-droplet").inputs["name"] == "plumber-dev"
    assert "vpcUuid" in staging.named("server-droplet").inputs, "not mistaken for an old droplet outside its VPC"
    assert run("dev", cloud, name="staging") and run("dev", cloud, monitoring=False)  # and again, both
    assert cloud.replaced == []
    # DigitalOcean project names are unique per account too
    assert {r.named("project-group").inputs["name"] for r in (dev, staging)} == {
        "plumber-dev (plumber-hosting/dev)", "plumber-dev (plumber-hosting/staging)"}


def test_two_scaled_out_stacks_with_one_droplet_name_have_their_own_load_balancer_tag() -> None:
    """Point 3: a tag is account-wide, and a load balancer sends requests to every droplet carrying its tag:
    two stacks with one droplet_name must not share it (each would serve the other's droplets)."""
    cloud = MockCloud()
    scale = run("scale", cloud)
    other = run("scale", cloud, name="scale-b")
    tags = [r.named("lb-tag").inputs["name"] for r in (scale, other)]
    assert tags == ["plumber-scale-lb-plumber-hosting-scale", "plumber-scale-lb-plumber-hosting-scale-b"]
    assert all(len(stacks) == 1 for stacks in cloud.tags.values()), cloud.tags
    for r, tag in zip((scale, other), tags, strict=True):
        assert r.named("lb-balancer").inputs["dropletTag"] == tag
        assert all(tag in d.inputs["tags"] for d in r.of_type(DROPLET))
    # the tag never changes once made (a new one would leave the load balancer without droplets for a while):
    # not with a new droplet_name, and not for a stack of an earlier version (<droplet_name>-lb, recorded nowhere)
    assert run("scale", cloud, droplet_name="plumber-big").named("lb-tag").inputs["name"] == tags[0]
    cloud.stack_outputs["scale-b"].pop("owned_ids")
    assert run("scale", cloud, name="scale-b").named("lb-tag").inputs["name"] == "plumber-scale-lb"


def test_two_projects_with_one_stack_and_droplet_name_both_up() -> None:
    """Point 3: two projects (stack `dev` in both) on one account: the project tag and the VPC name tell them
    apart."""
    cloud = MockCloud()
    ours = run("dev", cloud, monitoring=False)
    theirs = run_program(config("dev"), stack="dev", cloud=cloud, secret_keys=SCALE_SECRETS, project="team-b")
    assert theirs.named("network-vpc").inputs["name"] == "plumber-dev-vpc-team-b-dev"
    assert "project-team-b" in theirs.named("server-droplet").inputs["tags"]
    assert "project-plumber-hosting" in ours.named("server-droplet").inputs["tags"]
    run("dev", cloud, monitoring=False)
    assert cloud.replaced == []


def test_an_existing_stacks_vpc_is_renamed_in_place() -> None:
    """Point 3: the VPC keeps its URN, region and id; only `name` changes (not ForceNew in resource_vpc.go)."""
    from tests.program import _stable_id

    cloud = MockCloud()
    before = run("dev", cloud)
    vid = _stable_id("dev", VPC, "network-vpc")
    cloud.vpcs[vid] = "plumber-dev-vpc"  # as the earlier version named it
    as_made_by_an_earlier_version(cloud)
    cloud.droplets["dev::server-droplet"][1]["vpcUuid"] = vid  # made in the stack's VPC
    after = run("dev", cloud)
    old, new = before.named("network-vpc"), after.named("network-vpc")
    assert old.urn == new.urn and {k: v for k, v in new.inputs.items() if k != "name"} == {
        k: v for k, v in old.inputs.items() if k != "name"}
    assert after.named("server-droplet").inputs["vpcUuid"] == vid and cloud.replaced == []
    assert cloud.vpcs[vid] == "plumber-dev-vpc-plumber-hosting-dev"


def test_a_refused_token_is_a_config_error_naming_DIGITALOCEAN_TOKEN() -> None:  # noqa: N802
    """Point 6: no token, or a wrong one: the API answers 401 to the first read; the preview stops with the
    project's config-error format naming DIGITALOCEAN_TOKEN, not the provider's raw invoke error."""
    from components.config import ConfigError

    with pytest.raises(ConfigError) as err:
        run_program(config("dev"), stack="dev", cloud=MockCloud(token_refused=True), preview=True)
    message = str(err.value)
    assert message.startswith("invalid stack config:\n  DIGITALOCEAN_TOKEN: DigitalOcean refused the token"), message
    assert "401" in message and "Unable to authenticate you" in message
    # an existing-host stack reads nothing from DigitalOcean
    assert run_program(config("local", **local_overrides()), stack="local", cloud=MockCloud(token_refused=True), preview=True)


def test_renaming_the_droplet_keeps_the_stacks_own_ssh_key() -> None:
    """Point 8: the key the stack uploaded is recognised by the id its last `up` recorded, not by its name:
    a new droplet_name renames it in place; it is never deleted and uploaded again."""
    cloud = MockCloud()
    first = run("dev", cloud)
    key = first.named("server-key")
    [uploaded] = [k["id"] for k in cloud.ssh_keys]
    renamed = run("dev", cloud, droplet_name="plumber-dev2")
    assert cloud.deleted_keys == [], "the stack deleted its own key from the account"
    again = renamed.named("server-key")
    assert again.urn == key.urn and again.inputs["name"] == "plumber-dev2-deploy-plumber-hosting-dev"
    assert [(k["id"], k["name"]) for k in cloud.ssh_keys] == [(uploaded, "plumber-dev2-deploy-plumber-hosting-dev")]
    assert run("dev", cloud, droplet_name="plumber-dev2").named("server-key").urn == key.urn
    assert cloud.replaced == [] and cloud.deleted_keys == []
    # what the next run reads back from the stack's own state (components/account.py stack_record)
    assert first.outputs["owned_ids"]["ssh_key"] == renamed.outputs["owned_ids"]["ssh_key"] == str(uploaded)


def test_a_stack_from_an_earlier_version_keeps_its_key_by_name() -> None:
    """Point 8: outputs without owned_ids (an earlier version): the key named <droplet_name>-deploy is its own."""
    cloud = MockCloud()
    run("dev", cloud)
    cloud.stack_outputs["dev"].pop("owned_ids", None)
    cloud.ssh_keys[0]["name"] = "plumber-dev-deploy"  # as an earlier version named it
    again = run("dev", cloud)
    assert again.named("server-key").inputs["name"] == "plumber-dev-deploy" and cloud.deleted_keys == []


def test_a_first_up_that_failed_before_recording_keeps_its_key() -> None:
    """The first `up` uploaded the key (it is in the stack's state) but failed before its outputs were
    written: the next run, with nothing recorded, still recognises the key by its stack-qualified name."""
    cloud = MockCloud()
    run("dev", cloud)
    cloud.stack_outputs["dev"] = {}  # what a failed first `up` leaves: no outputs
    again = run("dev", cloud)
    assert again.named("server-key") and cloud.deleted_keys == [], "the stack deleted the key it had uploaded"


def test_a_new_stack_never_claims_another_stacks_key() -> None:
    """Points 3 and 8: a new stack with the same droplet_name and key reuses the other's key, uploads nothing
    (a second upload is a 422) and never takes it over."""
    cloud = MockCloud()
    run("dev", cloud)
    staging = run("dev", cloud, name="staging")
    assert not staging.of_type(SSH_KEY) and staging.named("server-droplet").inputs["sshKeys"] == [FP]
    assert run("dev", cloud).named("server-key") and cloud.deleted_keys == []
