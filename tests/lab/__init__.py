"""Test lab: droplet-like Debian hosts (13 by default, 12 on request) in systemd-nspawn (see lab.py)."""

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
