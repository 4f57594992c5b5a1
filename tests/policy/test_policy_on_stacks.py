"""The policy pack over what the real program declares for the real stack files.

tests/policy/test_policy_rules.py feeds each rule made-up properties; here the
resources come from ``run_program`` (the real ``__main__.py`` under Pulumi's
mocks), with the properties the engine would hand the pack: a custom
resource's inputs, a component's registered outputs. So renaming an output the
pack reads (the Server's ``admin_cidrs``, say) breaks these tests instead of
silently switching a mandatory policy off.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
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
from pulumi_policy.proxy import unknown_checking_proxy

from tests.conftest import local_overrides
from tests.program import ProgramRun, run_program, stack_config

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"


def _load_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plumber_policy_rules_on_stacks", POLICY_DIR / "rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


rules = _load_rules()
MANDATORY = {p.name for p in rules.POLICIES if p.enforcement_level == EnforcementLevel.MANDATORY}


def _policy_resources(run: ProgramRun) -> list[PolicyResource]:
    """Each declared resource as the pack sees it: custom resources by their inputs
    (the engine's property names), components by what they passed to register_outputs."""
    out = []
    for r in run.resources:
        props = dict(r.inputs) if r.custom else dict(run.component_outputs.get(r.urn, {}))
        out.append(
            PolicyResource(
                r.type, unknown_checking_proxy(props), r.urn, r.name,
                PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), []),
                None, None, [], {},
            )
        )
    return out


def violations(run: ProgramRun) -> dict[str, list[str]]:
    """policy name -> messages, every policy of the pack run as the engine runs it."""
    resources = _policy_resources(run)
    found: dict[str, list[str]] = {}
    for policy in rules.POLICIES:
        def report(message: str, urn: str | None = None, name: str = policy.name) -> None:
            found.setdefault(name, []).append(message)

        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                policy.validate(ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, None, None), report)
        else:
            assert isinstance(policy, StackValidationPolicy)
            policy.validate(StackValidationArgs(resources), report)
    return found


def prod(**overrides: Any) -> ProgramRun:
    cfg = copy.deepcopy(stack_config("prod"))
    cfg.update(overrides)
    return run_program(cfg, stack="prod")


def test_the_pack_reads_the_program_s_component_outputs() -> None:
    """Every property a stack rule reads is one the program registers (rules.py's docstring lists them)."""
    run = prod()
    by_type = {r.type: run.component_outputs[r.urn] for r in run.resources if not r.custom}
    assert {"stack", "mode", "reserved_ip", "size", "replicas", "admin_cidrs"} <= set(by_type[rules.SERVER])
    assert {"domain", "https"} <= set(by_type[rules.SITE])
    assert {"name", "workers", "memory_max_mb"} <= set(by_type[rules.APP])
    assert "inboundRules" in run.named("server-firewall").inputs
    assert "backups" in run.named("server-droplet").inputs


def test_the_prod_stack_passes_every_mandatory_policy() -> None:
    found = violations(prod())
    assert not {name: m for name, m in found.items() if name in MANDATORY}, found


def test_ssh_open_to_the_world_in_prod_fails_both_ssh_policies() -> None:
    found = violations(prod(admin_cidrs=["0.0.0.0/0"]))
    assert any("admin_cidrs contains 0.0.0.0/0" in m for m in found.get("prod-admin-cidrs-restricted", [])), found
    assert any("opens SSH (port 22) to 0.0.0.0/0" in m for m in found.get("prod-ssh-not-open-to-world", [])), found


def test_existing_host_prod_with_ssh_open_fails_on_the_server_output_alone() -> None:
    """No cloud firewall in existing-host mode: the Server's admin_cidrs output is all the pack has."""
    cfg = {**stack_config("local"), **local_overrides(), "admin_cidrs": ["::/0"]}
    for app in cfg["apps"]:
        app["workers"] = 2
    run = run_program(cfg, stack="prod")
    assert not run.of_type(rules.FIREWALL) and not run.of_type(rules.DROPLET)
    found = violations(run)
    assert set(found) & MANDATORY == {"prod-admin-cidrs-restricted"}, found
    assert "admin_cidrs contains ::/0" in found["prod-admin-cidrs-restricted"][0]


def test_a_domain_without_https_fails() -> None:
    cfg = copy.deepcopy(stack_config("prod"))
    cfg.pop("https")
    found = violations(run_program(cfg, stack="prod"))
    assert found.get("https-when-domain-set") == [
        "site domain 'api.example.com' is served without HTTPS; set plumber-hosting:https (email, accept_tos) "
        "so the domain gets a certificate"
    ], found


def test_one_worker_in_prod_fails() -> None:
    cfg = copy.deepcopy(stack_config("prod"))
    cfg["apps"][1]["workers"] = 1
    found = violations(run_program(cfg, stack="prod"))
    assert [m.split(" has ")[0] for m in found.get("prod-apps-multiple-workers", [])] == ["app 'hashing'"], found


def test_no_reserved_ip_in_prod_fails() -> None:
    found = violations(prod(reserved_ip=False))
    assert any("neither a reserved IP nor replicas >= 2" in m for m in found.get("prod-stable-endpoint", [])), found


def test_no_backups_in_prod_fails() -> None:
    found = violations(prod(backups=False))
    assert found.get("prod-droplet-backups") == [
        "droplet 'server-droplet' has backups off in production stack 'prod'; set plumber-hosting:backups: true"
    ], found


@pytest.mark.parametrize("replicas", [2, 3])
def test_load_balanced_prod_passes_without_a_reserved_ip(replicas: int) -> None:
    cfg = {**copy.deepcopy(stack_config("scale")), "backups": True, "replicas": replicas}
    found = violations(run_program(cfg, stack="prod-scale"))
    assert not {name: m for name, m in found.items() if name in MANDATORY}, found


def test_dev_stack_may_open_ssh() -> None:
    found = violations(run_program(stack_config("dev"), stack="dev"))
    assert not set(found) & MANDATORY, found
