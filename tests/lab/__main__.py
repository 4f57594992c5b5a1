"""CLI: python -m tests.lab up [--hosts N] | down | status [--json] | reboot NAME | reset NAME."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from tests.lab.lab import SUITES, Lab, LabError, status_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="(re)create the lab: apt proxy, pebble, N fresh hosts")
    p_up.add_argument("--hosts", type=int, default=1, metavar="N")
    p_up.add_argument("--suite", choices=SUITES, default=None, help="Debian release of the hosts (default trixie; env LAB_SUITE)")
    sub.add_parser("down", help="stop everything and remove netns/veths/trees")
    p_st = sub.add_parser("status", help="how to reach each host")
    p_st.add_argument("--json", action="store_true", help="print state.json instead")
    p_rb = sub.add_parser("reboot", help="clean reboot of one host")
    p_rb.add_argument("name")
    p_rs = sub.add_parser("reset", help="replace a host's tree with a fresh copy and boot it")
    p_rs.add_argument("name")
    p_rs.add_argument("--suite", choices=SUITES, default=None, help="switch the host to this Debian release")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s lab: %(message)s",
        datefmt="%H:%M:%S",
    )
    lab = Lab(suite=getattr(args, "suite", None) if args.cmd == "up" else None)
    t0 = time.monotonic()
    try:
        if args.cmd == "up":
            lab.up(args.hosts)
            print(status_text(lab))
        elif args.cmd == "down":
            lab.down()
            print("lab is down")
        elif args.cmd == "status":
            st = lab.state
            if args.json:
                print(json.dumps(st.to_dict() if st else None, indent=2))
            else:
                print(status_text(lab))
        elif args.cmd == "reboot":
            lab.reboot(args.name)
            print(f"{args.name} rebooted")
        elif args.cmd == "reset":
            lab.reset_host(args.name, suite=args.suite)
            print(f"{args.name} reset to a fresh tree")
    except (LabError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.cmd in ("up", "down", "reboot", "reset"):
        print(f"({args.cmd} took {time.monotonic() - t0:.1f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
