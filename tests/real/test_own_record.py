"""The stack reads back what its last `up` recorded (components/account.py ``stack_record``) through the
real engine's builtin ``pulumi:pulumi:readStackOutputs`` invoke, on the file backend, in `up` and in
`preview`: what recognises the stack's own SSH key and VPC by id (a renamed droplet keeps its key)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pulumi
from pulumi import automation as auto

from components.account import RECORD_OUTPUT, stack_record
from tests.real.conftest import RealStack


def recording(ssh_key: str) -> Callable[[], None]:
    def program() -> None:
        record = stack_record()
        seen = {"kind": record.kind, "ssh_key": record.ssh_key, "vpc": record.vpc}
        pulumi.log.info(f"seen {json.dumps(seen, sort_keys=True)}")  # what a preview shows
        pulumi.export("seen", seen)
        pulumi.export(RECORD_OUTPUT, {"ssh_key": ssh_key, "vpc": "vpc-" + ssh_key})

    return program


def test_the_last_up_is_read_back_in_up_and_preview(real_stack: Callable[..., RealStack]) -> None:
    first = real_stack(recording("111"))
    up1 = first.stack.up(on_output=first.log.append)
    assert up1.outputs["seen"].value == {"kind": "new", "ssh_key": "", "vpc": ""}

    second = real_stack(recording("222"))
    up2 = second.stack.up(on_output=second.log.append)
    assert up2.outputs["seen"].value == {"kind": "recorded", "ssh_key": "111", "vpc": "vpc-111"}

    # A preview reads the last up's record (nothing is written in a preview) ...
    third = real_stack(recording("333"))
    events: list[auto.EngineEvent] = []
    third.stack.preview(on_event=events.append)
    seen = [
        json.loads(e.diagnostic_event.message.strip().removeprefix("seen "))
        for e in events
        if e.diagnostic_event and e.diagnostic_event.message.strip().startswith("seen ")
    ]
    assert {"kind": "recorded", "ssh_key": "222", "vpc": "vpc-222"} in seen, seen
    # ... and an up after it still sees the last up, not the preview.
    up3 = third.stack.up(on_output=third.log.append)
    assert up3.outputs["seen"].value == {"kind": "recorded", "ssh_key": "222", "vpc": "vpc-222"}


def test_two_stacks_read_their_own_record(real_stack: Callable[..., RealStack]) -> None:
    dev = real_stack(recording("dev-key"), stack="dev")
    dev.stack.up(on_output=dev.log.append)
    prod = real_stack(recording("prod-key"), stack="prod")
    assert prod.stack.up(on_output=prod.log.append).outputs["seen"].value["kind"] == "new"
    again = real_stack(recording("dev-key"), stack="dev")
    assert again.stack.up(on_output=again.log.append).outputs["seen"].value["ssh_key"] == "dev-key"
