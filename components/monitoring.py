"""DigitalOcean Monitoring: an uptime check per app URL with its alerts (down,
latency, and with HTTPS the certificate's expiry), and droplet alerts (CPU,
memory, disk), sent to the stack's ``alerts`` emails and Slack channel."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as do

from components.config import AlertsSpec, StackSpec

TYPE = "plumber-hosting:index:Monitoring"
REGIONS = ["us_east", "us_west", "eu_west", "se_asia"]
WINDOW = "5m"
PERIOD = "2m"

DROPLET_ALERTS = {  # name -> (metric, spec field, what)
    "cpu": ("v1/insights/droplet/cpu", "cpu_percent", "CPU"),
    "memory": ("v1/insights/droplet/memory_utilization_percent", "memory_percent", "memory"),
    "disk": ("v1/insights/droplet/disk_utilization_percent", "disk_percent", "disk"),
}


def check_target(url: str, health_path: str | None) -> str:
    """An app's URL (ending in /), at its health path when it has one."""
    return url + health_path.lstrip("/") if health_path else url


@dataclass
class MonitoringArgs:
    spec: StackSpec
    alerts: AlertsSpec
    droplet_name: str
    app_urls: dict[str, pulumi.Input[str]]  # app name -> public URL
    droplet_ids: list[pulumi.Input[str]]


class Monitoring(pulumi.ComponentResource):
    checks: dict[str, do.UptimeCheck]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        spec, alerts, base = args.spec, args.alerts, args.droplet_name
        child = pulumi.ResourceOptions(parent=self)
        slack = alerts.slack
        # The webhook URL is a secret: it stays one in the state.
        slack_url = pulumi.Output.secret(slack.url) if slack else None

        uptime_notify = [
            do.UptimeAlertNotificationArgs(
                emails=alerts.emails,
                slacks=[do.UptimeAlertNotificationSlackArgs(channel=slack.channel, url=slack_url)] if slack else None,
            )
        ]
        self.checks = {}
        for app in spec.apps:
            url = pulumi.Output.from_input(args.app_urls[app.name])
            target = url.apply(lambda u, hp=app.health_path: check_target(u, hp))
            check = do.UptimeCheck(
                f"{name}-{app.name}",
                name=f"{base} {app.name}",
                target=target,
                type="https" if spec.https is not None else "http",
                regions=REGIONS,
                enabled=True,
                opts=child,
            )
            self.checks[app.name] = check
            kinds: list[tuple[str, dict[str, object]]] = [
                ("down", {"period": PERIOD}),
                ("latency", {"threshold": alerts.latency_ms, "comparison": "greater_than", "period": PERIOD}),
            ]
            if spec.https is not None:
                kinds.append(("ssl_expiry", {"threshold": alerts.ssl_expiry_days, "comparison": "less_than", "period": PERIOD}))
            for kind, settings in kinds:
                do.UptimeAlert(
                    f"{name}-{app.name}-{kind.replace('_', '-')}",
                    check_id=check.id,
                    name=f"{base} {app.name}: {kind.replace('_', ' ')}",
                    type=kind,
                    notifications=uptime_notify,
                    **settings,  # type: ignore[arg-type]
                    opts=child,
                )

        droplet_notify = do.MonitorAlertAlertsArgs(
            emails=alerts.emails,
            slacks=[do.MonitorAlertAlertsSlackArgs(channel=slack.channel, url=slack_url)] if slack else None,
        )
        for key, (metric, field, what) in DROPLET_ALERTS.items():
            value = getattr(alerts, field)
            do.MonitorAlert(
                f"{name}-{key}",
                type=metric,
                compare="GreaterThan",
                value=value,
                window=WINDOW,
                entities=args.droplet_ids,
                alerts=droplet_notify,
                description=f"{base}: {what} above {value}% for {WINDOW}",
                enabled=True,
                opts=child,
            )
        self.register_outputs({"checks": sorted(self.checks)})
