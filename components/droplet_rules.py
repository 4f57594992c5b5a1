"""Stack configs every validator of the DigitalOcean provider accepts but a real account refuses.

Checked with the rest of the config (``components/config.py``), so the user
gets one message naming the keys before any resource is registered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from components.config import StackSpec


def droplet_problems(spec: StackSpec) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if spec.load_balanced and spec.https is not None and not spec.manage_dns:
        # A lets_encrypt certificate for a load balancer is issued through DigitalOcean DNS:
        # the domain's zone must be managed there (docs/resources/certificate.md in the provider).
        out.append((
            "manage_dns",
            "with replicas >= 2 and https, the load balancer's Let's Encrypt certificate is issued through "
            "DigitalOcean DNS: the zone of 'domain' must be in DigitalOcean and manage_dns true "
            "(or remove 'https', or set replicas: 1 to let the server get its own certificate)",
        ))
    return out
