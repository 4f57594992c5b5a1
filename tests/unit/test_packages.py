"""What an app needs besides its code: system packages, pins, renv.lock — as the preview shows them."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

from tests.program import run_program, stack_config
from tests.unit.graphs import inputs_by_name


def _deploy_text(cfg: dict[str, Any], app: str) -> str:
    run = run_program(cfg, stack="dev")
    return next(r.inputs["create"] for r in run.resources if r.name == f"{app}-deploy")


def test_system_packages_show_in_the_preview_and_change_only_that_app() -> None:
    base = stack_config("dev")
    before = inputs_by_name(run_program(base, stack="dev"))
    cfg = copy.deepcopy(base)
    cfg["apps"][1]["system_packages"] = ["libxml2-dev", "libpq5"]
    text = _deploy_text(cfg, "hashing")
    assert "sys_wanted=(libxml2-dev libpq5)" in text
    # installed before the R packages
    assert text.index("sys_wanted=") < text.index("install.packages(")
    after = inputs_by_name(run_program(cfg, stack="dev"))
    assert sorted(n for n in before if before[n] != after[n]) == ["hashing-deploy"]  # the code's upload is the same


def test_pins_are_installed_at_their_version() -> None:
    cfg = copy.deepcopy(stack_config("dev"))
    cfg["apps"][1]["packages"] = ["digest", "phversion@1.0.0"]
    text = _deploy_text(cfg, "hashing")
    assert "pins <- c('phversion' = '1.0.0')" in text
    assert "pkgs <- c('digest')" in text  # the unpinned ones as before
    assert "renv::install(" in text


def test_renv_lock_is_restored_only_for_apps_that_have_one(tmp_path: Path) -> None:
    src = tmp_path / "hello"
    shutil.copytree("examples/hello", src)
    cfg = copy.deepcopy(stack_config("dev"))
    cfg["apps"][0]["source"] = str(src)
    assert "renv::restore(" not in _deploy_text(cfg, "hello")
    (src / "renv.lock").write_text('{"R": {"Version": "4.5.0"}, "Packages": {}}\n')
    text = _deploy_text(cfg, "hello")
    assert "renv::restore(" in text and "repos = c(CRAN = Sys.getenv('CRAN_REPO'))" in text
    cfg["apps"][0]["renv_repos"] = "lockfile"
    assert "repos = NULL" in _deploy_text(cfg, "hello")
