"""Tests for the CrossGuard policy pack in policy/: each rule with an input that
passes and one that fails, fed fake resources shaped like the engine's."""

from __future__ import annotations

import importlib.util
import runpy
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = ROOT / "policy"


def _load_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plumber_policy_rules", POLICY_DIR / "rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["plumber_policy_rules"] = module
    spec.loader.exec_module(module)
    return module


rules = _load_rules()

PROJECT = "plumber-hosting"


def urn(stack: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{type_}::{name}"


def resource(stack: str, type_: str, name: str, props: Mapping[str, Any]) -> PolicyResource:
    return PolicyResource(
        type_,
        unknown_checking_proxy(dict(props)),
        urn(stack, type_, name),
        name,
        PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), []),
        None,
        None,
        [],
        {},
    )


def server(stack: str, **outputs: Any) -> PolicyResource:
    props = {
        "stack": stack,
        "mode": "droplet",
        "reserved_ip": True,
        "size": "s-1vcpu-2gb",
        "replicas": 1,
        "admin_cidrs": ["203.0.113.0/24"],
    }
    props.update(outputs)
    return resource(stack, rules.SERVER, "server", props)


def app(stack: str, name: str, workers: float = 2.0, memory_max_mb: float | None = 512.0) -> PolicyResource:
    return resource(stack, rules.APP, f"app-{name}", {"name": name, "workers": workers, "memory_max_mb": memory_max_mb})


def site(stack: str, domain: str | None, https: bool) -> PolicyResource:
    return resource(stack, rules.SITE, "site", {"domain": domain, "https": https})


def stack_violations(policy_fn: Any, *resources: PolicyResource) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    policy_fn(StackValidationArgs(list(resources)), lambda message, urn=None: found.append((message, urn)))
    return found


def resource_violations(
    policy_fn: Any, stack: str, type_: str, name: str, props: Mapping[str, Any]
) -> list[str]:
    found: list[str] = []
    args = ResourceValidationArgs(type_, unknown_checking_proxy(dict(props)), urn(stack, type_, name), name, None, None)
    policy_fn(args, lambda message, urn=None: found.append(message))
    return found


def firewall_props(*sources: str, port_range: str = "22", protocol: str = "tcp") -> dict[str, Any]:
    return {
        "name": "fw",
        "inboundRules": [
            {"protocol": "tcp", "portRange": "80", "sourceAddresses": ["0.0.0.0/0", "::/0"]},
            {"protocol": protocol, "portRange": port_range, "sourceAddresses": list(sources)},
        ],
    }


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("slug", "mb"),
    [
        ("s-1vcpu-2gb", 2048),
        ("s-2vcpu-4gb-intel", 4096),
        ("s-1vcpu-512mb-10gb", 512),
        ("s-8vcpu-16gb-480gb-intel", 16384),
        ("c-2", 4096),
        ("c-4-intel", 8192),
        ("c2-2vcpu-4gb", 4096),
        ("g-2vcpu-8gb", 8192),
        ("gd-2vcpu-8gb", 8192),
        ("m-2vcpu-16gb", 16384),
        ("m3-2vcpu-16gb", 16384),
        ("so1_5-2vcpu-16gb", 16384),
        ("1gb", 1024),
        ("512mb", 512),
        ("gpu-h100x1-80gb", None),
        ("mystery", None),
        ("", None),
        (None, None),
    ],
)
def test_droplet_memory_mb(slug: str | None, mb: int | None) -> None:
    assert rules.droplet_memory_mb(slug) == mb


@pytest.mark.parametrize(
    ("value", "stack"),
    [
        ("urn:pulumi:prod::plumber-hosting::digitalocean:index/droplet:Droplet::web", "prod"),
        ("urn:pulumi:prod-eu::p::t::n", "prod-eu"),
        ("urn:other", None),
        (None, None),
    ],
)
def test_stack_from_urn(value: str | None, stack: str | None) -> None:
    assert rules.stack_from_urn(value) == stack


def test_resolve_stack_order() -> None:
    assert rules.resolve_stack(["bad", urn("prod", "t", "n")], "dev", {"PULUMI_STACK": "x"}) == "prod"
    assert rules.resolve_stack([], "dev", {"PULUMI_STACK": "x"}) == "dev"
    assert rules.resolve_stack([], None, {"PULUMI_STACK": "prod2"}) == "prod2"
    assert rules.resolve_stack([], None, {}) is None


@pytest.mark.parametrize(
    ("stack", "prod"),
    [("prod", True), ("production", True), ("prod-eu", True), ("org/plumber-hosting/prod", True),
     ("dev", False), ("preprod", False), ("", False), (None, False)],
)
def test_is_prod(stack: str | None, prod: bool) -> None:
    assert rules.is_prod(stack) is prod


@pytest.mark.parametrize(
    ("port_range", "included"),
    [("22", True), ("1-65535", True), ("20-30", True), ("all", True), ("", True), ("23-30", False), ("2222", False)],
)
def test_port_range_includes(port_range: str, included: bool) -> None:
    assert rules.port_range_includes(port_range, 22) is included


# ------------------------------------------------- (a) SSH not open in prod


def test_firewall_ssh_restricted_passes_in_prod() -> None:
    props = firewall_props("203.0.113.0/24", "2001:db8::/32")
    assert resource_violations(rules.validate_firewall_ssh, "prod", rules.FIREWALL, "fw", props) == []


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "0.0.0.0/00"])
def test_firewall_ssh_open_fails_in_prod(cidr: str) -> None:
    props = firewall_props("203.0.113.0/24", cidr)
    found = resource_violations(rules.validate_firewall_ssh, "prod", rules.FIREWALL, "fw", props)
    assert len(found) == 1
    assert f"opens SSH (port 22) to {cidr}" in found[0]
    assert "firewall 'fw' inbound rule 1" in found[0]
    assert "production stack 'prod'" in found[0]


def test_firewall_ssh_open_by_wide_port_range_fails_in_prod() -> None:
    props = firewall_props("0.0.0.0/0", port_range="1-65535")
    assert len(resource_violations(rules.validate_firewall_ssh, "prod", rules.FIREWALL, "fw", props)) == 1


def test_firewall_ssh_open_is_allowed_outside_prod_and_for_udp() -> None:
    props = firewall_props("0.0.0.0/0")
    assert resource_violations(rules.validate_firewall_ssh, "dev", rules.FIREWALL, "fw", props) == []
    udp = firewall_props("0.0.0.0/0", protocol="udp")
    assert resource_violations(rules.validate_firewall_ssh, "prod", rules.FIREWALL, "fw", udp) == []


def test_firewall_rule_ignores_other_resource_types() -> None:
    props = firewall_props("0.0.0.0/0")
    assert resource_violations(rules.validate_firewall_ssh, "prod", rules.DROPLET, "fw", props) == []


def test_admin_cidrs_restricted_passes_in_prod() -> None:
    assert stack_violations(rules.validate_admin_cidrs, server("prod")) == []


def test_admin_cidrs_anywhere_fails_in_prod() -> None:
    srv = server("prod", admin_cidrs=["203.0.113.0/24", "::/0"])
    found = stack_violations(rules.validate_admin_cidrs, srv)
    assert len(found) == 1
    message, at = found[0]
    assert "admin_cidrs contains ::/0" in message and "production stack 'prod'" in message
    assert at == srv.urn


def test_admin_cidrs_anywhere_allowed_in_dev() -> None:
    assert stack_violations(rules.validate_admin_cidrs, server("dev", admin_cidrs=["0.0.0.0/0"])) == []


# --------------------------------------------------- (b) HTTPS with a domain


def test_site_with_domain_and_https_passes() -> None:
    assert stack_violations(rules.validate_site_https, site("dev", "api.example.com", True)) == []


def test_site_without_domain_may_skip_https() -> None:
    assert stack_violations(rules.validate_site_https, site("prod", None, False)) == []


def test_site_with_domain_without_https_fails_in_any_stack() -> None:
    found = stack_violations(rules.validate_site_https, site("dev", "api.example.com", False))
    assert [m for m, _ in found] == [
        "site domain 'api.example.com' is served without HTTPS; set plumber-hosting:https "
        "(email, accept_tos) so the domain gets a certificate"
    ]


# ------------------------------------------ (c) workers and stable endpoint


def test_prod_apps_with_two_workers_pass() -> None:
    assert stack_violations(rules.validate_app_workers, server("prod"), app("prod", "a", 2.0), app("prod", "b", 4)) == []


def test_prod_app_with_one_worker_fails() -> None:
    found = stack_violations(rules.validate_app_workers, server("prod"), app("prod", "a", 2), app("prod", "b", 1.0))
    assert len(found) == 1
    message, at = found[0]
    assert message.startswith("app 'b' has workers=1 in production stack 'prod'")
    assert at == urn("prod", rules.APP, "app-b")


def test_dev_app_with_one_worker_passes() -> None:
    assert stack_violations(rules.validate_app_workers, server("dev"), app("dev", "a", 1)) == []


@pytest.mark.parametrize(
    "outputs",
    [
        {"reserved_ip": True, "replicas": 1},
        {"reserved_ip": False, "replicas": 2},
        {"reserved_ip": False, "replicas": 1, "mode": "existing", "size": None},
    ],
)
def test_prod_stable_endpoint_passes(outputs: dict[str, Any]) -> None:
    assert stack_violations(rules.validate_stable_endpoint, server("prod", **outputs)) == []


def test_prod_without_reserved_ip_or_replicas_fails() -> None:
    srv = server("prod", reserved_ip=False, replicas=1)
    found = stack_violations(rules.validate_stable_endpoint, srv)
    assert len(found) == 1
    assert found[0][0].startswith(
        "server in production stack 'prod' has neither a reserved IP nor replicas >= 2 (reserved_ip=False, replicas=1)"
    )
    assert found[0][1] == srv.urn


def test_dev_without_reserved_ip_passes() -> None:
    assert stack_violations(rules.validate_stable_endpoint, server("dev", reserved_ip=False)) == []


def test_stable_endpoint_inferred_from_resources_without_server_outputs() -> None:
    droplet = resource("prod", rules.DROPLET, "web", {"size": "s-1vcpu-2gb", "backups": True})
    bare_server = resource("prod", rules.SERVER, "server", {})
    found = stack_violations(rules.validate_stable_endpoint, bare_server, droplet)
    assert len(found) == 1 and "neither a reserved IP nor a load balancer" in found[0][0]
    rip = resource("prod", rules.RESERVED_IP, "ip", {"region": "fra1"})
    assert stack_violations(rules.validate_stable_endpoint, bare_server, droplet, rip) == []


# ------------------------------------------------------- (d) droplet backups


def test_prod_droplet_with_backups_passes() -> None:
    props = {"size": "s-1vcpu-2gb", "backups": True}
    assert resource_violations(rules.validate_droplet_backups, "prod", rules.DROPLET, "web", props) == []


@pytest.mark.parametrize("props", [{"size": "s-1vcpu-2gb", "backups": False}, {"size": "s-1vcpu-2gb"}])
def test_prod_droplet_without_backups_fails(props: dict[str, Any]) -> None:
    found = resource_violations(rules.validate_droplet_backups, "prod", rules.DROPLET, "web", props)
    assert found == [
        "droplet 'web' has backups off in production stack 'prod'; set plumber-hosting:backups: true"
    ]


def test_dev_droplet_without_backups_passes() -> None:
    props = {"size": "s-1vcpu-2gb", "backups": False}
    assert resource_violations(rules.validate_droplet_backups, "dev", rules.DROPLET, "web", props) == []


# ------------------------------------------------ advisory: droplet memory


def test_memory_fits_passes() -> None:
    # 2 x 512 + 1 x 1024 = 2048 MB on a 2 GB droplet: fits exactly.
    found = stack_violations(
        rules.validate_memory, server("dev"), app("dev", "a", 2, 512), app("dev", "b", 1, 1024)
    )
    assert found == []


def test_memory_overcommitted_fails() -> None:
    srv = server("dev", size="s-1vcpu-1gb")
    found = stack_violations(rules.validate_memory, srv, app("dev", "a", 2, 512), app("dev", "b", 1, 256))
    assert found == [
        (
            "droplet size 's-1vcpu-1gb' has 1024 MB of memory but the apps may use up to 1280 MB "
            "(memory_max x workers: a 512x2, b 256x1); pick a larger size or lower memory_max/workers",
            srv.urn,
        )
    ]


def test_memory_counts_each_app_once_per_droplet_with_replicas() -> None:
    """With replicas each app is one PlumberApp per replica (hello, hello@2, ...); a droplet runs one of each."""
    def replica_app(name: str, i: int) -> PolicyResource:
        res_name = name if i == 1 else f"{name}@{i}"
        return resource("dev", rules.APP, res_name, {"name": name, "workers": 2, "memory_max_mb": 512})

    apps = [replica_app(n, i) for n in ("a", "b") for i in (1, 2, 3)]
    assert stack_violations(rules.validate_memory, server("dev", size="s-1vcpu-2gb"), *apps) == []
    found = stack_violations(rules.validate_memory, server("dev", size="s-1vcpu-1gb"), *apps)
    assert len(found) == 1 and "up to 2048 MB (memory_max x workers: a 512x2, b 512x2)" in found[0][0]


def test_memory_ignores_unknown_slugs_and_unlimited_apps() -> None:
    assert stack_violations(rules.validate_memory, server("dev", size="x-huge"), app("dev", "a", 8, 4096)) == []
    assert stack_violations(rules.validate_memory, server("dev", size="s-1vcpu-512mb-10gb"), app("dev", "a", 8, None)) == []


def test_memory_falls_back_to_droplet_size() -> None:
    droplet = resource("dev", rules.DROPLET, "web", {"size": "s-1vcpu-512mb-10gb"})
    found = stack_violations(rules.validate_memory, droplet, app("dev", "a", 2, 512))
    assert len(found) == 1 and "has 512 MB of memory but the apps may use up to 1024 MB" in found[0][0]
    assert found[0][1] == droplet.urn


# ---------------------------------------------------- the policy objects


EXPECTED_LEVELS = {
    "prod-ssh-not-open-to-world": EnforcementLevel.MANDATORY,
    "prod-admin-cidrs-restricted": EnforcementLevel.MANDATORY,
    "https-when-domain-set": EnforcementLevel.MANDATORY,
    "prod-apps-multiple-workers": EnforcementLevel.MANDATORY,
    "prod-stable-endpoint": EnforcementLevel.MANDATORY,
    "prod-droplet-backups": EnforcementLevel.MANDATORY,
    "droplet-memory-fits-apps": EnforcementLevel.ADVISORY,
}


def test_policies_names_and_levels() -> None:
    assert {p.name: p.enforcement_level for p in rules.POLICIES} == EXPECTED_LEVELS


def test_policy_objects_report_through_validate() -> None:
    by_name = {p.name: p for p in rules.POLICIES}
    backups = by_name["prod-droplet-backups"]
    assert isinstance(backups, ResourceValidationPolicy)
    found: list[str] = []
    args = ResourceValidationArgs(
        rules.DROPLET, unknown_checking_proxy({"backups": False}), urn("prod", rules.DROPLET, "web"), "web", None, None
    )
    backups.validate(args, lambda message, urn=None: found.append(message))
    assert len(found) == 1

    https = by_name["https-when-domain-set"]
    assert isinstance(https, StackValidationPolicy)
    found = []
    https.validate(StackValidationArgs([site("dev", "a.example", False)]), lambda m, u=None: found.append(m))
    assert len(found) == 1


def test_unknown_values_surface_as_unknown_value_error() -> None:
    # During preview an unknown property raises UnknownValueError, which the
    # engine turns into "can't run policy during preview", not a pass.
    props = {"inboundRules": [{"protocol": "tcp", "portRange": "22", "sourceAddresses": [UNKNOWN_STRING_VALUE]}]}
    with pytest.raises(UnknownValueError):
        resource_violations(rules.validate_firewall_ssh, "prod", rules.FIREWALL, "fw", props)


class _ServerStartedError(Exception):
    pass


class _FakeServer:
    """Accepts the handler registrations; starting it ends the test run."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: 0

    def start(self) -> None:
        raise _ServerStartedError


def test_main_builds_the_policy_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run policy/__main__.py as the engine does; stop it where the gRPC server would start.

    Everything before that is real: PolicyPack checks its name and that each
    policy is a Policy, then builds the analyzer servicer."""
    import pulumi_policy.policy as policy_module

    monkeypatch.setattr(policy_module.grpc, "server", lambda *a, **k: _FakeServer())
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop("rules", None)
    with pytest.raises(_ServerStartedError):
        runpy.run_path(str(POLICY_DIR / "__main__.py"), run_name="__main__")
    imported = sys.modules.pop("rules")
    assert imported.PACK_NAME == "plumber-hosting-guardrails"
    assert {p.name for p in imported.POLICIES} == set(EXPECTED_LEVELS)


def test_policy_pack_yaml_names_python_runtime() -> None:
    import yaml

    data = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert data["runtime"]["name"] == "python"
    assert "pulumi-policy" in (POLICY_DIR / "requirements.txt").read_text()
