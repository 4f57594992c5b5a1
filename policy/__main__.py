"""The plumber-hosting policy pack: `pulumi preview --policy-pack policy`.

The rules live in rules.py so tests can call them without the Pulumi engine;
this file only registers them. PolicyPack() serves the engine over gRPC and
does not return, so nothing may follow it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pulumi_policy import PolicyPack
from rules import PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    policies=POLICIES,
    description="Guardrails for plumber-hosting stacks: SSH exposure, HTTPS, redundancy, "
    "backups and memory in prod* stacks.",
)
