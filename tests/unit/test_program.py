"""The resource graph of the real program over the real stack files."""

from __future__ import annotations

import copy
from typing import Any

from tests.conftest import TEST_KEY, local_overrides
from tests.program import ProgramRun, run_program, run_stack, stack_config
from tests.unit.graphs import NEW_FOR_EVERY_STACK, SINGLE_SERVER, inputs_by_name

DO = "digitalocean:index/"
CMD = "command:remote:Command"


def names(run: ProgramRun, typ: str) -> list[str]:
    return sorted(r.name for r in run.of_type(typ))


def test_dev_stack_graph() -> None:
    run = run_stack("dev")
    assert run.summary() and set(run.summary()) == SINGLE_SERVER | NEW_FOR_EVERY_STACK
    droplet = run.named("server-droplet").inputs
    assert droplet["image"] == "debian-13-x64" and droplet["size"] == "s-1vcpu-2gb" and droplet["region"] == "nyc3"
    # every address the user sees is the reserved IP
    assert run.outputs["ip"] == "198.51.100.7"
    assert run.outputs["url"] == "http://198.51.100.7"
    assert run.outputs["apps"]["hello"]["url"] == "http://198.51.100.7/hello/"
    assert run.outputs["apps"]["hello"]["docs"] == "http://198.51.100.7/hello/__docs__/"
    assert run.outputs["apps"]["hashing"]["docs"] is None
    assert run.outputs["apps"]["hashing"]["logs"] == "journalctl -u 'plumber-hashing@*' -f"
    assert run.outputs["ssh"] == "ssh root@198.51.100.7"
    assert any("admin_cidrs allows SSH from anywhere" in w for w in run.warnings)


def test_prod_stack_dns_https_firewall() -> None:
    run = run_stack("prod")
    records = {(r.inputs["type"], r.inputs["name"], r.inputs["domain"]) for r in run.of_type(f"{DO}dnsRecord:DnsRecord")}
    assert records == {("A", "api", "example.com"), ("AAAA", "api", "example.com")}
    a = next(r for r in run.of_type(f"{DO}dnsRecord:DnsRecord") if r.inputs["type"] == "A")
    assert a.inputs["value"] == "198.51.100.7"  # the reserved IP, not the droplet's
    fw = run.named("server-firewall").inputs
    rules = {(r["protocol"], r.get("portRange")): r["sourceAddresses"] for r in fw["inboundRules"]}
    assert rules[("tcp", "22")] == ["203.0.113.0/24", "2001:db8::/32"]
    assert rules[("tcp", "80")] == rules[("tcp", "443")] == ["0.0.0.0/0", "::/0"]
    assert ("icmp", None) in rules
    assert run.outputs["url"] == "https://api.example.com"
    assert run.outputs["apps"]["hello"]["url"] == "https://api.example.com/v1/hello/"
    site = run.named("site-nginx").inputs["create"]
    assert "certbot certonly --webroot" in site and "--domain api.example.com" in site
    assert "Strict-Transport-Security" in site and "return 301 https://api.example.com$request_uri" in site
    assert run.named("server-droplet").inputs["backups"] is True


def test_existing_host_mode_creates_no_cloud_resources() -> None:
    run = run_stack("local", local_overrides())
    assert not [r for r in run.resources if r.type.startswith("digitalocean:")]
    conn = run.named("provision-server").inputs["connection"]
    assert conn["host"] == "10.213.8.2" and conn["user"] == "root" and conn["port"] == 22
    assert run.outputs["url"] == "http://10.213.8.2"
    assert run.outputs["ssh"] == "ssh root@10.213.8.2"


def test_existing_host_with_sudo_user() -> None:
    cfg = {**stack_config("local"), **local_overrides(), "host": {"address": "192.0.2.5", "user": "deploy", "port": 2222}}
    run = run_program(cfg, stack="local")
    for c in run.commands:
        assert c.inputs["create"].startswith("sudo -n bash -c")
    assert run.outputs["ssh"] == "ssh -p 2222 deploy@192.0.2.5"


def _apps_config(n: int) -> dict[str, Any]:
    cfg: dict[str, Any] = {**stack_config("local"), **local_overrides()}
    cfg.pop("forward_root", None)
    cfg["apps"] = [
        {"name": f"api{i}", "source": "examples/hello", "port": 12000 + 3 * i} for i in range(n)
    ]
    return cfg


def test_zero_one_many_apps() -> None:
    for n in (0, 1, 12):
        run = run_program(_apps_config(n), stack="local")
        assert names(run, "plumber-hosting:index:PlumberApp") == sorted(f"api{i}" for i in range(n))
        assert len(run.commands) == 3 + n  # provision, site, a deploy per app, rotation
        assert len(run.of_type("command:remote:CopyToRemote")) == n  # an upload per app
        assert sorted(run.outputs["apps"]) == sorted(f"api{i}" for i in range(n))


_by_name = inputs_by_name


def test_changing_one_app_changes_only_that_app() -> None:
    base = stack_config("dev")
    before = _by_name(run_stack("dev"))
    changed = copy.deepcopy(base)
    changed["apps"][1]["workers"] = 3
    changed["apps"][1]["env"] = {"MODE": "fast"}
    after = _by_name(run_program(changed, stack="dev"))
    differing = sorted(n for n in before if before[n] != after[n])
    assert differing == ["hashing-deploy"]  # the code is the same: nothing to copy


def test_app_code_change_changes_only_that_app(tmp_path: Any) -> None:
    import shutil

    src = tmp_path / "hello"
    shutil.copytree("examples/hello", src)
    cfg = stack_config("dev")
    cfg["apps"][0]["source"] = str(src)
    before = _by_name(run_program(cfg, stack="dev"))
    (src / "plumber.R").write_text((src / "plumber.R").read_text() + "\n# v2\n")
    after = _by_name(run_program(cfg, stack="dev"))
    assert sorted(n for n in before if before[n] != after[n]) == ["hello-deploy", "hello-upload"]
    assert before["hello-deploy"]["create"] != after["hello-deploy"]["create"]  # the release id shows in the diff


def test_env_change_does_not_ask_the_server_again() -> None:
    changed = copy.deepcopy(stack_config("dev"))
    changed["apps"][0]["env"] = {"GREETING": "changed"}
    before, after = _by_name(run_stack("dev")), _by_name(run_program(changed, stack="dev"))
    assert sorted(n for n in before if before[n] != after[n]) == ["hello-deploy"]
    assert before["hello-deploy"]["stdin"] != after["hello-deploy"]["stdin"]


def test_adding_and_removing_apps_never_touches_the_droplet_or_others() -> None:
    base = stack_config("dev")
    runs = [base, {**base, "apps": base["apps"][:1], "forward_root": "hello"}, {**base, "apps": []}]
    runs[2].pop("forward_root")
    results = [_by_name(run_program(cfg, stack="dev")) for cfg in runs]
    for r in results[1:]:
        for name in ("server-droplet", "server-firewall", "server-ip", "server-key", "provision-server"):
            assert r[name] == results[0][name], name
    assert results[1]["hello-deploy"] == results[0]["hello-deploy"]


def test_unchanged_config_is_byte_identical() -> None:
    assert _by_name(run_stack("dev")) == _by_name(run_stack("dev"))


def test_no_replacement_on_change() -> None:
    """Every command updates in place: a replacement's create-before-delete
    would otherwise run the old delete after the new create."""
    run = run_stack("dev")
    for c in run.commands:
        assert c.inputs["update"] == c.inputs["create"]
        assert "triggers" not in c.inputs
        # the SDK's own replaceOnChanges names only triggers, which we never set
        assert set(c.replace_on_changes) <= {"triggers[*]"}


def test_app_delete_is_guarded_by_its_deploy_token() -> None:
    run = run_stack("dev")
    cmd = run.named("hello-deploy").inputs
    token_line = next(line for line in cmd["delete"].splitlines() if "deploy-id" in line and "!=" in line)
    token = token_line.split("!= ")[1].split(" ")[0].strip("]'\"")
    assert len(token) == 12 and f"printf '%s\\n' {token}" in cmd["create"]


def test_ports_are_stable_per_app() -> None:
    base = stack_config("dev")
    grown = copy.deepcopy(base)
    grown["apps"].append({"name": "zeta", "source": "examples/hello", "workers": 4})
    grown["apps"][1]["workers"] = 5
    before = run_program(base, stack="dev").named("hello-deploy").inputs["create"]
    after = run_program(grown, stack="dev").named("hello-deploy").inputs["create"]
    line = next(x for x in before.splitlines() if x.startswith("PORTS="))
    assert line in after.splitlines()


def test_secrets_stay_secret() -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    cfg = {**stack_config("dev")}
    cfg["apps"] = copy.deepcopy(cfg["apps"])
    cfg["apps"][0]["secret_env"] = {"API_TOKEN": secret}
    key_text = TEST_KEY.read_text()
    run = run_program(cfg, stack="dev", secret_keys=("apps",))
    for r in run.resources:
        for k, v in r.inputs.items():
            if k in r.secret_inputs:
                continue
            assert secret not in repr(v), (r.name, k)
            assert key_text.strip().splitlines()[1] not in repr(v), (r.name, k)
    deploy = run.named("hello-deploy")
    assert {"stdin", "connection"} <= deploy.secret_inputs
    assert secret not in repr(run.outputs)


def test_api_keys_never_leave_the_program() -> None:
    """Only SHA-256 digests of API keys reach the server: not even a secret input holds a key."""
    import hashlib

    key = "ak-7c1e0f9d8b6a5c4e3f2a1b0c"
    cfg = copy.deepcopy(stack_config("dev"))
    cfg["apps"][0]["auth"] = {"api_keys": [key]}
    cfg["apps"][0]["rate_limit"] = "10r/s"
    run = run_program(cfg, stack="dev", secret_keys=("apps",))
    for r in run.resources:
        assert key not in repr(r.inputs), r.name
    assert key not in repr(run.outputs)
    create = run.named("hello-deploy").inputs["create"]
    assert hashlib.sha256(key.encode()).hexdigest() in create
    assert "limit_req zone=plumber_hello burst=10 nodelay;" in create
    assert "limit_req" not in run.named("hashing-deploy").inputs["create"]


def test_droplet_inputs_never_depend_on_apps() -> None:
    base = stack_config("dev")
    other = copy.deepcopy(base)
    other["apps"] = [{"name": "solo", "source": "examples/hashing", "workers": 4, "packages": ["digest"]}]
    other["forward_root"] = "solo"
    a = run_program(base, stack="dev").named("server-droplet").inputs
    b = run_program(other, stack="dev").named("server-droplet").inputs
    assert a == b


def test_commands_run_in_dependency_order() -> None:
    run = run_stack("dev")
    urn = {r.name: r.urn for r in run.resources}
    # the droplet's own address, before the reserved IP moves to it (issue 23, point 5)
    assert urn["server-firewall"] in run.named("provision-server").dependencies
    assert urn["server-ip-assignment"] not in run.named("provision-server").dependencies
    assert urn["rotation-join"] in run.named("server-ip-assignment").dependencies
    assert urn["provision-server"] in run.named("site-nginx").dependencies
    for app in ("hello-deploy", "hashing-deploy"):
        assert urn["site-nginx"] in run.named(app).dependencies
