"""Test lab: droplet-like Debian 12 hosts in systemd-nspawn (see lab.py)."""

from tests.lab.lab import (
    AptCacherState,
    ChallTestSrvState,
    HostState,
    Lab,
    LabError,
    LabState,
    PebbleState,
)

__all__ = [
    "AptCacherState",
    "ChallTestSrvState",
    "HostState",
    "Lab",
    "LabError",
    "LabState",
    "PebbleState",
]
