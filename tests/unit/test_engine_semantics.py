"""The test engine's decisions (tests/engine.py) match the real engine's, with no host:
each command is recorded (and optionally made slow or failing) instead of run over SSH.
tests/ENGINE.md cites the real source for each behaviour checked here."""

from __future__ import annotations

import copy
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pulumi
import pytest

from tests import engine as engine_mod
from tests.conftest import local_overrides
from tests.engine import CommandFailedError, Engine, Step, UpResult
from tests.program import Declared, stack_config


class Recording(Engine):
    """Records each command it would run; ``slow`` names sleep, ``fail`` names fail."""

    def __init__(self, state: Path, slow: float = 0.0) -> None:
        super().__init__(state)
        self.slow = slow
        self.fail: set[str] = set()
        self.lock = threading.Lock()
        self.env_seen: dict[str, dict[str, str]] = {}

    def _run(self, res: dict[str, Any] | Declared, op: str, text: str | None, result: UpResult) -> dict[str, str]:
        name = res.name if isinstance(res, Declared) else res["name"]
        started = time.time()
        if self.slow:
            time.sleep(self.slow)
        result.steps.append(Step(name, op, time.time() - started, started=started))
        if name in self.fail:
            raise CommandFailedError(getattr(res, "urn", "") or res["urn"], op, "Process exited with status 1")  # type: ignore[index]
        return {"stdout": "", "stderr": ""}

    def _copy(self, res: Declared, op: str, result: UpResult, prev: Any) -> dict[str, str]:
        result.steps.append(Step(res.name, op, 0.0, started=time.time(), type=engine_mod.COPY))  # no host: recorded only
        return {}


@pytest.fixture
def cfg(tmp_path: Path) -> dict[str, Any]:
    c = stack_config("local")
    c.update(local_overrides())
    src = tmp_path / "hello"
    shutil.copytree("examples/hello", src)
    c["apps"][0]["source"] = str(src)  # an app whose code the test may change
    c["apps"].append({"name": "extra", "source": "examples/hello", "path": "/extra"})
    return c


def test_deletes_run_after_every_create_and_update(tmp_path: Path, cfg: dict[str, Any]) -> None:
    eng = Recording(tmp_path / "state.json")
    eng.deploy(cfg, "local")
    changed = copy.deepcopy(cfg)
    changed["apps"] = [a for a in changed["apps"] if a["name"] != "extra"]
    changed["apps"][0]["workers"] = 3
    ran = eng.deploy(changed, "local")[1].ran
    first_delete = min(i for i, r in enumerate(ran) if r.startswith("delete"))
    assert all(r.startswith("delete") for r in ran[first_delete:]), ran
    assert {"update hello-deploy", "delete extra-deploy", "delete extra-upload"} <= set(ran), ran


def test_deletes_go_in_parallel_antichains(tmp_path: Path, cfg: dict[str, Any]) -> None:
    eng = Recording(tmp_path / "state.json")
    eng.deploy(cfg, "local")
    eng.slow = 0.3
    result = eng.destroy()
    steps = {s.name: s for s in result.steps}
    # independent deletes overlap: every app's deploy at once (one antichain)
    deploys = [steps[f"{a}-deploy"] for a in ("hello", "hashing", "extra")]
    assert max(s.started for s in deploys) < min(s.started + s.seconds for s in deploys)
    # a dependency is deleted only after what depends on it
    assert steps["hello-upload"].started >= steps["hello-deploy"].started + steps["hello-deploy"].seconds
    assert steps["provision-server"].started >= max(s.started + s.seconds for s in deploys)
    assert steps["rotation-join"].started < steps["hello-deploy"].started  # out of rotation before apps go
    assert eng.load() == []


def test_after_the_first_failure_no_step_starts_and_nothing_is_deleted(tmp_path: Path, cfg: dict[str, Any]) -> None:
    eng = Recording(tmp_path / "state.json")
    eng.deploy(cfg, "local")
    before = {r["urn"]: r for r in eng.load()}
    changed = copy.deepcopy(cfg)
    changed["apps"] = [a for a in changed["apps"] if a["name"] != "extra"]  # a delete pending
    changed["apps"][0]["workers"] = 3
    changed["apps"][1]["workers"] = 2
    eng.fail = {"hello-deploy"}
    eng.slow = 0.2
    with pytest.raises(CommandFailedError) as failed:
        eng.deploy(changed, "local")
    assert failed.value.program is not None
    after = {r["urn"]: r for r in eng.load()}
    assert {r["name"] for r in after.values()} >= {"extra-deploy", "extra-upload"}  # no delete phase
    hello = next(u for u in after if u.endswith("::hello-deploy"))
    assert after[hello] == before[hello]  # the failed update keeps the old state


def test_update_in_place_whatever_update_is_only_triggers_replace() -> None:
    def declared(**inputs: Any) -> Declared:
        return Declared("urn:x::c", engine_mod.COMMAND, "c", "", True, inputs, set(), [], False, [])

    session = engine_mod._Session.__new__(engine_mod._Session)
    old = {"inputs": {"create": "a", "delete": "d", "triggers": [1]}}
    assert session._op(declared(create="b", delete="d", triggers=[1]), old, {"create": "b", "delete": "d",
                                                                           "triggers": [1]}) == "update"
    assert session._op(declared(), old, {"create": "a", "delete": "e", "triggers": [1]}) == "update"
    assert session._op(declared(), old, {"create": "a", "update": "u", "delete": "d", "triggers": [2]}) == "replace"
    assert session._op(declared(), old, dict(old["inputs"])) == "same"


def test_preview_of_a_code_change_plans_that_apps_updates_with_unknown_stdin(tmp_path: Path, cfg: dict[str, Any]) -> None:
    eng = Recording(tmp_path / "state.json")
    first = eng.preview(cfg, "local")
    assert set(first.changes().values()) == {"create"}
    assert not eng.state_file.exists()  # a preview carries nothing out
    eng.deploy(cfg, "local")
    assert eng.preview(cfg, "local").changes(None) == {}
    plumber = Path(cfg["apps"][0]["source"]) / "plumber.R"
    plumber.write_text(plumber.read_text() + "\n# changed\n")
    plan = eng.preview(cfg, "local")
    assert plan.changes(None) == {"hello-upload": "update", "hello-deploy": "update"}
    assert plan.unknown_inputs == {}  # the code travels by CopyToRemote: the deploy's stdin (env file) is known
    removed = copy.deepcopy(cfg)
    removed["apps"] = removed["apps"][:1]
    assert eng.preview(removed, "local").changes(None) == {
        "hello-upload": "update", "hello-deploy": "update", "hashing": "delete", "extra": "delete",
        "hashing-upload": "delete", "hashing-deploy": "delete", "extra-upload": "delete", "extra-deploy": "delete"}


def test_copy_to_remote_copies_on_create_and_on_hash_or_path_change_only(tmp_path: Path, monkeypatch: Any) -> None:
    copies: list[tuple[str, str | None]] = []

    def fake_copy(conn: dict[str, Any], remote_path: str, *, path: str | None = None, text: str | None = None,
                  timeout: float = 0) -> Any:
        copies.append((remote_path, path or text))
        return engine_mod.sshrun.Result("", "", None, [])

    monkeypatch.setattr(engine_mod.sshrun, "copy_to_remote", fake_copy)
    src = tmp_path / "app"
    src.mkdir()
    (src / "plumber.R").write_text("a\n")
    eng = Engine(tmp_path / "state.json")

    def declare(remote_path: str, conn_port: int = 22) -> Declared:
        return Declared("urn:c::code", engine_mod.COPY, "code", "", True,
                        {"connection": {"host": "h", "port": conn_port}, "remotePath": remote_path,
                         "source": pulumi.FileArchive(str(src))}, set(), [], False, [])

    def up(res: Declared) -> UpResult:
        session = engine_mod._Session(eng, preview=False)
        session.step(res)
        from tests.program import ProgramRun
        return session.finish(ProgramRun("s", [res]))

    assert up(declare("/srv/a")).ran == ["create code"] and len(copies) == 1
    assert up(declare("/srv/a")).ran == [] and len(copies) == 1  # same
    assert up(declare("/srv/a", 2222)).ran == ["update code"] and len(copies) == 1  # update, no copy
    (src / "plumber.R").write_text("b\n")
    assert up(declare("/srv/a", 2222)).ran == ["update code"] and len(copies) == 2  # hash changed
    assert up(declare("/srv/b", 2222)).ran == ["update code"] and len(copies) == 3  # path changed
    from tests.program import ProgramRun
    session = engine_mod._Session(eng, preview=False)
    assert session.finish(ProgramRun("s", [])).ran == ["delete code"] and len(copies) == 3  # no Delete
    assert eng.load() == []
