"""Scale out: replicas behind a DigitalOcean load balancer, under Pulumi's mocks.

N = 1 keeps a single-server stack's names; N = 2 and 5 add a VPC, a load
balancer (TLS, /healthz, sticky cookies) and droplets it alone may reach on port
80; a release rolls across the replicas one at a time; changing N touches no
other replica; monitoring and the project group every droplet.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config import ConfigError
from tests.conftest import TEST_KEY
from tests.program import ProgramRun, run_program, stack_config
from tests.static.rendered import script_of
from tests.unit.graphs import COPY, DNS, NEW_FOR_EVERY_STACK, SINGLE_SERVER, inputs_by_name
from tests.unit.test_config import D, with_

DO = "digitalocean:index/"
CMD = "command:remote:Command"
LB_IP = "192.0.2.80"  # the mocks' load balancer address

MONITORING_N1 = {  # alerts configured: 2 apps x (check, down, latency, ssl) + 3 droplet alerts
    ("plumber-hosting:index:Monitoring", "monitoring"),
    *{(f"{DO}uptimeCheck:UptimeCheck", f"monitoring-{a}") for a in ("hello", "hashing")},
    *{(f"{DO}uptimeAlert:UptimeAlert", f"monitoring-{a}-{k}") for a in ("hello", "hashing")
      for k in ("down", "latency", "ssl-expiry")},
    *{(f"{DO}monitorAlert:MonitorAlert", f"monitoring-{k}") for k in ("cpu", "memory", "disk")},
}


def scale_config(n: int, **overrides: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(stack_config("scale"))
    cfg["replicas"] = n
    cfg.update(overrides)
    return cfg


def run(n: int, **overrides: Any) -> ProgramRun:
    return run_program(scale_config(n, **overrides), stack="scale", secret_keys=("ssh_private_key", "alerts"))


by_name = inputs_by_name


def urns(r: ProgramRun) -> dict[str, str]:
    return {x.name: x.urn for x in r.resources}


def replica(base: str, i: int) -> str:
    return base if i == 1 else f"{base}@{i}"


# --------------------------------------------------------------- resource graph


def test_one_replica_keeps_the_single_server_names() -> None:
    r = run(1)
    # https behind the reserved IP: the certificate once the IP points at the server (issue 23, point 5)
    certificate = {(CMD, "site-certificate")}
    assert set(r.summary()) == SINGLE_SERVER | DNS | NEW_FOR_EVERY_STACK | MONITORING_N1 | certificate
    assert not any("@" in name for _, name in r.summary())
    droplet = r.named("server-droplet").inputs
    assert droplet["name"] == "plumber-scale" and droplet["vpcUuid"]  # in the stack's VPC from the start
    # a reserved IP, not a load balancer, is the address
    assert r.named("dns-a").inputs["value"] == "198.51.100.7"
    assert r.outputs["ip"] == "198.51.100.7" and "servers" not in r.outputs
    # the server holds the certificate itself, as before
    assert "certbot certonly" in r.named("site-nginx").inputs["create"]


@pytest.mark.parametrize("n", [2, 5])
def test_n_replicas_behind_a_load_balancer(n: int) -> None:
    r = run(n)
    summary = set(r.summary())
    front = {
        ("plumber-hosting:index:LoadBalancer", "lb"),
        (f"{DO}tag:Tag", "lb-tag"),
        (f"{DO}certificate:Certificate", "lb-certificate"),
        (f"{DO}loadBalancer:LoadBalancer", "lb-balancer"),
        (f"{DO}firewall:Firewall", "lb-firewall"),
    }
    per_replica = {
        (typ, replica(base, i))
        for i in range(1, n + 1)
        for typ, base in [
            ("plumber-hosting:index:Server", "server"),
            ("plumber-hosting:index:Provision", "provision"),
            ("plumber-hosting:index:Site", "site"),
            ("plumber-hosting:index:PlumberApp", "hello"),
            ("plumber-hosting:index:PlumberApp", "hashing"),
            ("plumber-hosting:index:Rotation", "rotation"),
        ]
    } | {
        (typ, f"{replica(base, i)}-{child}")
        for i in range(1, n + 1)
        for typ, base, child in [
            (f"{DO}droplet:Droplet", "server", "droplet"),
            (CMD, "provision", "server"),
            (CMD, "site", "nginx"),
            (COPY, "hello", "upload"),
            (CMD, "hello", "deploy"),
            (COPY, "hashing", "upload"),
            (CMD, "hashing", "deploy"),
            (CMD, "rotation", "join"),
        ]
    }
    shared = {
        (f"{DO}sshKey:SshKey", "server-key"),  # one key, every droplet trusts it
        ("plumber-hosting:index:Network", "network"),
        (f"{DO}vpc:Vpc", "network-vpc"),
        ("plumber-hosting:index:Dns", "dns"),
        (f"{DO}dnsRecord:DnsRecord", "dns-a"),
        ("plumber-hosting:index:Project", "project"),
        (f"{DO}project:Project", "project-group"),
    }
    assert summary == front | per_replica | shared | MONITORING_N1
    # no reserved IP and no per-droplet firewall: the load balancer is the address
    assert not r.of_type(f"{DO}reservedIp:ReservedIp") and len(r.of_type(f"{DO}firewall:Firewall")) == 1

    vpc_id = r.named("network-vpc")
    tag = r.named("lb-tag").inputs["name"]
    assert tag == "plumber-scale-lb-plumber-hosting-scale"  # unique per stack: tags are account-wide
    droplets = [r.named(f"{replica('server', i)}-droplet").inputs for i in range(1, n + 1)]
    assert [d["name"] for d in droplets] == [f"plumber-scale-{i}" for i in range(1, n + 1)]
    for d in droplets:
        assert tag in d["tags"] and d["vpcUuid"]  # in the VPC, behind the load balancer
        assert d["sshKeys"] == droplets[0]["sshKeys"]
        assert {k: v for k, v in d.items() if k not in ("name",)} == {
            k: v for k, v in droplets[0].items() if k not in ("name",)
        }, "replicas are identical but for their name"
    assert vpc_id.urn in r.named("server-droplet").dependencies

    # each replica's commands reach its own droplet
    hosts = [r.named(f"{replica('provision', i)}-server").inputs["connection"]["host"] for i in range(1, n + 1)]
    assert hosts == [f"203.0.113.{9 + i}" for i in range(1, n + 1)]
    assert r.outputs["ip"] == LB_IP and r.outputs["url"] == "https://api.example.com"
    assert [s["ip"] for s in r.outputs["servers"]] == hosts


def test_load_balancer_terminates_tls_and_checks_healthz() -> None:
    r = run(3)
    lb = r.named("lb-balancer").inputs
    cert = r.named("lb-certificate").inputs
    assert cert["type"] == "lets_encrypt" and cert["domains"] == ["api.example.com"]
    rules = {(f["entryProtocol"], f["entryPort"]): f for f in lb["forwardingRules"]}
    assert set(rules) == {("http", 80), ("https", 443)}
    assert rules[("https", 443)]["targetProtocol"] == "http" and rules[("https", 443)]["targetPort"] == 80
    assert rules[("https", 443)]["certificateName"] == cert["name"]
    assert lb["redirectHttpToHttps"] is True
    assert lb["healthcheck"]["path"] == "/healthz" and lb["healthcheck"]["protocol"] == "http"
    assert lb["healthcheck"]["port"] == 80
    assert lb["stickySessions"]["type"] == "cookies"  # hello asks for sticky
    assert lb["dropletTag"] == r.named("lb-tag").inputs["name"]
    assert lb["disableLetsEncryptDnsRecords"] is True  # our own record points at it
    # the servers themselves serve plain HTTP behind it: no certbot, the client's scheme from the LB
    site = r.named("site@2-nginx").inputs["create"]
    assert "certbot certonly" not in site and "listen 443" not in site
    assert "location = /healthz" in site and "Strict-Transport-Security" in site
    provision = r.named("provision@2-server").inputs["create"]
    assert "real_ip_header X-Forwarded-For;" in provision
    deploy = r.named("hello@2-deploy").inputs["create"]
    assert "proxy_set_header X-Forwarded-Proto $plumber_forwarded_proto;" in deploy


def test_no_sticky_app_means_no_sticky_load_balancer() -> None:
    cfg = scale_config(2)
    for a in cfg["apps"]:
        a.pop("sticky", None)
    r = run_program(cfg, stack="scale", secret_keys=("ssh_private_key", "alerts"))
    assert r.named("lb-balancer").inputs["stickySessions"]["type"] == "none"


def test_plain_http_load_balancer_without_https() -> None:
    cfg = scale_config(2)
    for key in ("https", "domain", "hostname", "alerts"):
        cfg.pop(key)
    r = run_program(cfg, stack="scale")
    lb = r.named("lb-balancer").inputs
    assert [(f["entryProtocol"], f["entryPort"]) for f in lb["forwardingRules"]] == [("http", 80)]
    assert lb["redirectHttpToHttps"] is False and not r.of_type(f"{DO}certificate:Certificate")
    assert not r.of_type(f"{DO}dnsRecord:DnsRecord")
    assert r.outputs["url"] == f"http://{LB_IP}"
    assert r.outputs["apps"]["hello"]["url"] == f"http://{LB_IP}/hello/"


@pytest.mark.parametrize("n", [2, 5])
def test_droplets_take_port_80_only_from_the_load_balancer(n: int) -> None:
    r = run(n)
    lb = r.named("lb-balancer")
    fw = r.named("lb-firewall")
    assert fw.inputs["tags"] == [r.named("lb-tag").inputs["name"]]
    rules = {(x["protocol"], x.get("portRange")): x for x in fw.inputs["inboundRules"]}
    assert set(rules) == {("tcp", "22"), ("tcp", "80"), ("icmp", None)}  # no 443: TLS ends at the LB
    assert rules[("tcp", "80")]["sourceLoadBalancerUids"] == ["lb-uuid-lb-balancer"]  # the mocks' id of lb-balancer
    assert "sourceAddresses" not in rules[("tcp", "80")]
    assert lb.urn in fw.dependencies
    assert rules[("tcp", "22")]["sourceAddresses"] == ["203.0.113.0/24"]
    # nothing runs on a server before the firewall guards it
    for i in range(1, n + 1):
        assert fw.urn in r.named(f"{replica('provision', i)}-server").dependencies


@pytest.mark.parametrize("n", [1, 2, 5])
def test_dns_points_at_the_load_balancer_once_every_replica_serves(n: int) -> None:
    r = run(n)
    a = r.named("dns-a").inputs
    assert (a["type"], a["name"], a["domain"]) == ("A", "api", "example.com")
    assert a["value"] == (LB_IP if n >= 2 else "198.51.100.7")
    if n >= 2:
        u = urns(r)
        deps = r.named("dns-a").dependencies
        assert {u[f"{replica('rotation', i)}-join"] for i in range(1, n + 1)} <= set(deps)


def test_dns_aaaa_with_ipv6_goes_to_the_load_balancer() -> None:
    r = run(2, ipv6=True)
    records = {x.inputs["type"]: x.inputs["value"] for x in r.of_type(f"{DO}dnsRecord:DnsRecord")}
    assert records == {"A": LB_IP, "AAAA": "2001:db8::80"}
    assert r.named("lb-balancer").inputs["networkStack"] == "DUALSTACK"


@pytest.mark.parametrize("n", [2, 5])
def test_certificate_names_only_the_domain(n: int) -> None:
    r = run(n)
    certs = r.of_type(f"{DO}certificate:Certificate")
    assert len(certs) == 1 and certs[0].inputs["domains"] == ["api.example.com"]
    other = run(n, hostname="www")
    assert other.named("lb-certificate").inputs["domains"] == ["www.example.com"]
    # a new domain's certificate has a new name: it can exist beside the old one while the LB switches
    assert other.named("lb-certificate").inputs["name"] != certs[0].inputs["name"]


# ------------------------------------------------------------------ rolling


@pytest.mark.parametrize("n", [2, 5])
def test_a_release_rolls_across_replicas_one_at_a_time(n: int) -> None:
    r = run(n)
    u = urns(r)
    for app in ("hello", "hashing"):
        other = "hashing" if app == "hello" else "hello"
        for i in range(2, n + 1):
            deps = set(r.named(f"{replica(app, i)}-deploy").dependencies)
            # waits for the same app on the replica before ...
            assert u[f"{replica(app, i - 1)}-deploy"] in deps
            # ... and for its own server's site, not for other apps
            assert u[f"{replica('site', i)}-nginx"] in deps
            assert u[f"{replica(other, i - 1)}-deploy"] not in deps
        first = set(r.named(f"{app}-deploy").dependencies)
        assert not any("@" in d.rsplit("::", 1)[-1] for d in first), "replica 1 waits for no other replica"
    # the order Pulumi can run them in: replica i's deploy strictly after replica i-1's
    order = _topological(r)
    for app in ("hello", "hashing"):
        positions = [order.index(f"{replica(app, i)}-deploy") for i in range(1, n + 1)]
        assert positions == sorted(positions)


def _topological(r: ProgramRun) -> list[str]:
    names = {x.urn: x.name for x in r.commands}
    deps = {x.name: {names[d] for d in x.dependencies if d in names} for x in r.commands}
    out: list[str] = []
    while deps:
        ready = sorted(n for n, d in deps.items() if d <= set(out))
        assert ready, f"cycle among {sorted(deps)}"
        out.append(ready[0])
        del deps[ready[0]]
    return out


def test_servers_provision_in_parallel_but_serve_only_once_deployed() -> None:
    r = run(3)
    u = urns(r)
    for i in (2, 3):
        deps = set(r.named(f"{replica('provision', i)}-server").dependencies)
        assert not any(v in deps for k, v in u.items() if k.startswith(("provision-", "hello-", "site-")))
        rot = set(r.named(f"{replica('rotation', i)}-join").dependencies)
        assert {u[f"{replica('hello', i)}-deploy"], u[f"{replica('hashing', i)}-deploy"]} <= rot


@pytest.mark.parametrize(("before", "after"), [(2, 3), (5, 6), (5, 3), (3, 2)])
def test_changing_n_touches_no_other_replica(before: int, after: int) -> None:
    a, b = by_name(run(before)), by_name(run(after))
    kept = min(before, after)
    for i in range(1, kept + 1):
        for name in [f"{replica('server', i)}-droplet", f"{replica('provision', i)}-server",
                     f"{replica('site', i)}-nginx", f"{replica('hello', i)}-deploy", f"{replica('hello', i)}-upload",
                     f"{replica('hashing', i)}-deploy", f"{replica('rotation', i)}-join"]:
            assert a[name] == b[name], f"{name} changed going from {before} to {after} replicas"
    for name in ("lb-balancer", "lb-firewall", "network-vpc", "lb-tag", "lb-certificate", "server-key", "dns-a"):
        assert a[name] == b[name], name
    gone = {n for n in a if n not in b}
    added = {n for n in b if n not in a}
    assert all("@" in n for n in gone | added)
    assert {int(n.split("@")[1].split("-")[0]) for n in gone | added} == set(range(kept + 1, max(before, after) + 1))


def test_removing_a_replica_drains_it_first() -> None:
    """Its rotation leaves the load balancer (and waits for it to notice) before its apps go."""
    r = run(3)
    leave = script_of(r.named("rotation@3-join").inputs["delete"])
    assert "rm -f /etc/plumber-hosting/in-service" in leave and "sleep 35" in leave
    one = run(1)
    assert "sleep 35" not in script_of(one.named("rotation-join").inputs["delete"])  # no load balancer to drain


# -------------------------------------------------------- project, monitoring


@pytest.mark.parametrize(("stack", "env"), [("scale", "Development"), ("prod-eu", "Production"), ("staging", "Staging")])
def test_project_groups_every_droplet_and_the_load_balancer(stack: str, env: str) -> None:
    r = run_program(scale_config(3), stack=stack, secret_keys=("ssh_private_key", "alerts"))
    p = r.named("project-group").inputs
    # project names are unique per account: the project and stack are in it
    assert p["environment"] == env and stack in p["description"] and p["name"] == f"plumber-scale (plumber-hosting/{stack})"
    droplet_urns = [x for x in p["resources"] if x.startswith("do:droplet:")]
    assert len(droplet_urns) == 3 and len(set(droplet_urns)) == 3
    assert [x for x in p["resources"] if x.startswith("do:loadbalancer:")]
    one = run(1).named("project-group").inputs["resources"]
    assert sorted(x.split(":")[1] for x in one) == ["droplet"]  # not the reserved IP (components/server.py)


def test_monitoring_checks_every_app_and_alerts_on_every_droplet() -> None:
    r = run(3)
    checks = {x.name: x.inputs for x in r.of_type(f"{DO}uptimeCheck:UptimeCheck")}
    assert checks["monitoring-hello"]["target"] == "https://api.example.com/hello/health"
    assert checks["monitoring-hashing"]["target"] == "https://api.example.com/hash/health"
    assert {c["type"] for c in checks.values()} == {"https"}
    alerts = {x.name: x for x in r.of_type(f"{DO}uptimeAlert:UptimeAlert")}
    assert {a.inputs["type"] for a in alerts.values()} == {"down", "latency", "ssl_expiry"}
    assert alerts["monitoring-hello-latency"].inputs["threshold"] == 2000
    assert alerts["monitoring-hello-ssl-expiry"].inputs["comparison"] == "less_than"
    notify = alerts["monitoring-hello-down"].inputs["notifications"][0]
    assert notify["emails"] == ["ops@example.com"] and notify["slacks"][0]["channel"] == "#ops"
    droplet_ids = {x.urn: x for x in r.of_type(f"{DO}droplet:Droplet")}
    monitors = {x.name: x for x in r.of_type(f"{DO}monitorAlert:MonitorAlert")}
    assert {m.inputs["type"] for m in monitors.values()} == {
        "v1/insights/droplet/cpu", "v1/insights/droplet/memory_utilization_percent",
        "v1/insights/droplet/disk_utilization_percent",
    }
    for m in monitors.values():
        assert len(m.inputs["entities"]) == 3 and set(droplet_ids) <= set(m.dependencies)
    # the webhook URL stays secret
    for res in [*alerts.values(), *monitors.values()]:
        assert {"notifications", "alerts"} & res.secret_inputs, res.name
        for k, v in res.inputs.items():
            if k not in res.secret_inputs:
                assert "hooks.slack.com" not in repr(v)


def test_no_https_no_ssl_alert_and_no_alerts_no_monitoring() -> None:
    cfg = scale_config(2)
    cfg.pop("https")
    r = run_program(cfg, stack="scale", secret_keys=("ssh_private_key", "alerts"))
    assert {x.inputs["type"] for x in r.of_type(f"{DO}uptimeAlert:UptimeAlert")} == {"down", "latency"}
    assert r.named("monitoring-hello").inputs["target"] == "http://api.example.com/hello/health"
    cfg.pop("alerts")
    r = run_program(cfg, stack="scale")
    assert not [x for x in r.resources if "monitoring" in x.name]


# ------------------------------------------------------- several existing hosts


def hosts_config(n: int) -> dict[str, Any]:
    cfg = copy.deepcopy(stack_config("local"))
    cfg.pop("host")
    cfg["ssh_private_key_file"] = str(TEST_KEY)
    cfg["hosts"] = [{"address": f"10.213.{8 + i}.2"} for i in range(n)]
    return cfg


def test_several_existing_hosts_no_cloud_resources() -> None:
    r = run_program(hosts_config(2), stack="local")
    assert not [x for x in r.resources if x.type.startswith("digitalocean:")]
    hosts = {x.name: x.inputs["connection"]["host"] for x in r.commands if x.name.endswith("-server")}
    assert hosts == {"provision-server": "10.213.8.2", "provision@2-server": "10.213.9.2"}, hosts
    assert r.outputs["url"] == "http://10.213.8.2"
    assert [s["ip"] for s in r.outputs["servers"]] == ["10.213.8.2", "10.213.9.2"]
    u = urns(r)
    assert u["hello-deploy"] in r.named("hello@2-deploy").dependencies
    # no load balancer here: leaving the rotation does not wait for one
    assert "sleep 35" not in script_of(r.named("rotation@2-join").inputs["delete"])


def test_hosts_of_one_is_host() -> None:
    cfg = hosts_config(1)
    single = copy.deepcopy(cfg)
    single["host"] = single.pop("hosts")[0]
    assert by_name(run_program(cfg, stack="local")) == by_name(run_program(single, stack="local"))


# ------------------------------------------------------------------ bad config

H2 = hosts_config(2)
SCALE = scale_config(3)
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("replicas 0", with_(D(), "replicas", 0), "replicas", "greater than or equal to 1"),
    ("replicas 21", with_(D(), "replicas", 21), "replicas", "less than or equal to 20"),
    ("replicas with hosts", with_(H2, "replicas", 2), "replicas", "list each one under 'hosts'"),
    ("host and hosts", with_(H2, "host", {"address": "192.0.2.1"}), "hosts", "not both"),
    ("hosts empty", with_(H2, "hosts", []), "hosts", "at least one"),
    ("hosts duplicate", with_(H2, "hosts[1].address", "10.213.8.2"), "hosts[1].address", "also hosts[0]"),
    ("hosts bad address", with_(H2, "hosts[1].address", "not an address!"), "hosts[1].address", "IP address or a DNS name"),
    ("hosts unknown key", with_(H2, "hosts[0].adress", "x"), "hosts[0].adress", "expected one of"),
    ("hosts with https", with_(with_(H2, "domain", "example.com"), "https", {"email": "a@example.com", "accept_tos": True}),
     "https", "your own load balancer"),
    ("hosts with managed dns", with_(H2, "domain", "example.com"), "manage_dns", "manage_dns: false"),
    ("alerts on existing hosts", with_(H2, "alerts", {"emails": ["a@example.com"]}), "alerts", "only applies"),
    ("alerts nowhere", with_(SCALE, "alerts", {"cpu_percent": 80}), "alerts", "expected 'emails' or 'slack'"),
    ("alerts bad email", with_(SCALE, "alerts.emails", ["ops"]), "alerts.emails", "not an email address"),
    ("alerts bad slack url", with_(SCALE, "alerts.slack.url", "http://x"), "alerts.slack.url", "https:// URL"),
    ("alerts slack without url", with_(SCALE, "alerts.slack", {"channel": "#ops"}), "alerts.slack.url", "required key"),
    ("alerts bad threshold", with_(SCALE, "alerts.cpu_percent", 120), "alerts.cpu_percent", "less than or equal to 100"),
    ("alerts unknown key", with_(SCALE, "alerts.phone", "1"), "alerts.phone", "expected one of"),
    ("alerts without the metrics agent", with_(SCALE, "monitoring", False), "monitoring", "must be true"),
    ("private ACME behind the LB", with_(SCALE, "https.acme_server", "https://acme.example.com/dir"),
     "https.acme_server", "Let's Encrypt"),
]


@pytest.mark.parametrize(("config", "key", "words"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_scale_config_names_the_key(config: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        run_program(config, stack="scale")
    message = str(err.value)
    assert f"plumber-hosting:{key}:" in message, message
    assert words in message, message
