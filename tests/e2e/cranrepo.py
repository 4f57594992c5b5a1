"""A local CRAN-like repository for the lab (the lab host has no internet).

Holds phgreet (built here from tests/e2e/rpkg) and digest, repackaged from
Debian's r-cran-digest as an R binary package (the lab host runs the same
Debian R), indexed with tools::write_PACKAGES and served over HTTP on the
lab's host-end address.
"""

from __future__ import annotations

import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE_LIBRARY = Path("/usr/lib/R/site-library")


def build(repo: Path) -> Path:
    contrib = repo / "src" / "contrib"
    contrib.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["R", "CMD", "build", "--no-manual", "--no-build-vignettes", str(HERE / "rpkg" / "phgreet")],
        cwd=contrib, check=True, capture_output=True,
    )
    digest = SITE_LIBRARY / "digest"
    if not (digest / "DESCRIPTION").exists():
        raise RuntimeError("r-cran-digest is not installed on this machine (apt-get install r-cran-digest)")
    version = next(
        line.split(":", 1)[1].strip()
        for line in (digest / "DESCRIPTION").read_text().splitlines()
        if line.startswith("Version:")
    )
    with tarfile.open(contrib / f"digest_{version}.tar.gz", "w:gz") as tar:
        tar.add(digest, arcname="digest")
    subprocess.run(
        ["Rscript", "-e", f"tools::write_PACKAGES('{contrib}', type = 'source')"], check=True, capture_output=True
    )
    return repo


class RepoServer:
    """python's http.server on ADDRESS:PORT, stopped by PID."""

    def __init__(self, repo: Path, address: str, port: int = 8079) -> None:
        self.repo, self.address, self.port = repo, address, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def __enter__(self) -> RepoServer:
        self.proc = subprocess.Popen(
            ["python3", "-m", "http.server", str(self.port), "--bind", self.address, "--directory", str(self.repo)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/src/contrib/PACKAGES", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"the CRAN-like repository did not come up on {self.url}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
