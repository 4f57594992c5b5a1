"""``make security-report``: the security figures of a fresh lab host running
the example stack (``stacks/Pulumi.local.yaml``) with HTTPS from the lab's
ACME server.

Runs tests/e2e/test_security.py and the bad-input catalogue
(tests/e2e/test_bad_input.py) on the lab, then prints the exposure score of
every API unit, the TCP ports open from outside, the testssl.sh summary and the
catalogue's pass count. Exits non-zero if any check failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def catalogue_counts(junit: Path) -> tuple[int, int]:
    """(passed, total) of the catalogue's cases in a JUnit XML report."""
    passed = total = 0
    for case in ET.parse(junit).getroot().iter("testcase"):
        if "test_bad_input" not in case.get("classname", ""):
            continue
        total += 1
        if not any(child.tag in ("failure", "error", "skipped") for child in case):
            passed += 1
    return passed, total


def main() -> int:
    out = ROOT / ".lab"
    out.mkdir(exist_ok=True)
    report, junit = out / "security-report.json", out / "security-report.xml"
    report.unlink(missing_ok=True)
    env = {**os.environ, "PH_SECURITY_REPORT": str(report)}
    rc = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
         "tests/e2e/test_security.py", "tests/e2e/test_bad_input.py"],
        cwd=ROOT, env=env,
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    print("\n== plumber-hosting security report (lab host, example stack + HTTPS) ==")
    print("\nsystemd-analyze security, exposure per API unit (target <= 2.0):")
    for unit, score in sorted(data.get("exposure", {}).items()):
        print(f"  {unit:40} {score:.1f}")
    print(f"\nTCP ports open from outside (nmap -p-): {data.get('open_ports', 'not measured')}")
    print(f"SSH authentication methods offered: {data.get('ssh_auth_methods', 'not measured')}")
    print(f"rate limit, 20 requests at once (burst 5): {data.get('rate_limit', 'not measured')}")
    tls = data.get("testssl", {})
    print("\ntestssl.sh:")
    print(f"  protocols offered: {tls.get('protocols_offered', 'not measured')}")
    print(f"  findings by severity: {tls.get('severities', 'not measured')}")
    print(f"  HIGH or CRITICAL: {tls.get('high_or_critical', 'not measured')}")
    print(f"  chain of trust: {tls.get('cert_trust', 'not measured')}")
    for note in tls.get("medium_low_warn", []):
        print(f"  {note}")
    if junit.exists():
        passed, total = catalogue_counts(junit)
        print(f"\nbad-input catalogue: {passed}/{total} cases pass")
    print(f"\nall checks {'passed' if rc == 0 else 'did NOT pass (see above)'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
