"""Program scale: the real __main__.py under Pulumi's mocks with 1, 10 and 100
apps, and the remote commands a change would run.

* Evaluation time: each size in a fresh Python process (as `pulumi up` starts
  one), REPEATS times, median; the program's evaluation (run_program) in wall
  and CPU time (the machine is shared: CPU time is what an idle machine's wall
  time would be), and the whole process (interpreter, imports, evaluation).
* Commands: the test engine's create/update/delete decisions (tests/engine.py,
  `Engine.deploy`) over the 100-app stack, with the SSH step replaced by a
  counter: first `up`, a no-op `up`, and one app's code, workers, addition and
  removal.

Configs are the dev stack (droplet mode) with generated apps, each with its own
source directory (a copy of bench/app), its own path and an explicit port.
"""

from __future__ import annotations

import copy
import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 10, 100, 200)
REPEATS = 5
COUNT_APPS = 100


@dataclass
class ScaleResult:
    apps: int
    resources: int
    commands: int
    seconds: float  # median evaluation wall time
    cpu_seconds: float  # median evaluation CPU time (the wall time on an idle machine)
    process_seconds: float  # median wall time of the whole process


@dataclass
class CountResult:
    change: str
    ran: list[str]


def app_config(n: int, work: Path, key: Path) -> dict[str, Any]:
    from tests.program import stack_config

    cfg = stack_config("dev")
    cfg["ssh_private_key_file"] = str(key)
    cfg.pop("forward_root", None)
    apps = []
    for i in range(n):
        name = f"app{i:03d}"
        source = work / "src" / name
        if not source.exists():
            shutil.copytree(ROOT / "bench" / "app", source)
        apps.append({"name": name, "source": str(source), "path": f"/{name}", "port": 12000 + 10 * i,
                     "health_path": "/health"})
    cfg["apps"] = apps
    return cfg


def make_key(work: Path) -> Path:
    key = work / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)],
                       check=True, timeout=30)
    return key


def _evaluate(config_file: str) -> None:
    """In the child process: evaluate the program once and print what it took."""
    t0 = time.perf_counter()
    from tests.program import run_program

    imported, cpu0 = time.perf_counter(), time.process_time()
    run = run_program(json.loads(Path(config_file).read_text()), stack="dev")
    done, cpu1 = time.perf_counter(), time.process_time()
    print(json.dumps({"import": imported - t0, "seconds": done - imported, "cpu_seconds": cpu1 - cpu0,
                      "resources": len(run.resources), "commands": len(run.commands)}))


def time_program(n: int, work: Path, key: Path) -> ScaleResult:
    config = work / f"config-{n}.json"
    config.write_text(json.dumps(app_config(n, work, key)))
    evals, cpus, walls, last = [], [], [], {}
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "bench.scale", "--evaluate", str(config)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=True)
        walls.append(time.perf_counter() - t0)
        last = json.loads(proc.stdout.strip().splitlines()[-1])
        evals.append(last["seconds"])
        cpus.append(last["cpu_seconds"])
    return ScaleResult(n, last["resources"], last["commands"], statistics.median(evals), statistics.median(cpus),
                       statistics.median(walls))


def command_counts(work: Path, key: Path) -> list[CountResult]:
    """What the test engine would run for each change of the 100-app stack (no host needed)."""
    from tests.engine import COMMAND, Engine, Step, UpResult
    from tests.program import Declared

    class CountingEngine(Engine):
        """tests/engine.py's decisions; each command is recorded instead of run over SSH, and the state is
        kept in memory (the engine checkpoints the whole state to disk after every resource)."""

        def __init__(self) -> None:
            super().__init__(Path("/nonexistent"))
            self.state: list[dict[str, Any]] = []

        def load(self) -> list[dict[str, Any]]:
            return list(self.state)  # the engine replaces entries, never changes one

        def save(self, resources: list[dict[str, Any]]) -> None:
            self.state = list(resources)

        def _run(self, res: dict[str, Any] | Declared, op: str, text: str | None, result: UpResult) -> dict[str, str]:
            result.steps.append(Step(res.name if isinstance(res, Declared) else res["name"], op, 0.0))
            return {"stdout": "", "stderr": ""}

        def _copy(self, res: Declared, op: str, result: UpResult, prev: Any) -> dict[str, str]:
            return {}  # an app's <app>-upload (CopyToRemote) copies a file; it runs no command

    engine = CountingEngine()
    base = app_config(COUNT_APPS, work, key)
    out: list[CountResult] = []

    def up(change: str, cfg: dict[str, Any]) -> None:
        steps = engine.deploy(cfg, stack="dev")[1].steps
        # remote commands only: the engine also lists cloud resources and copies as steps
        out.append(CountResult(change, [f"{s.op} {s.name}" for s in steps if s.type == COMMAND]))

    up(f"first up ({COUNT_APPS} apps)", base)
    up("no-op up (nothing changed)", base)
    app = work / "src" / "app042" / "plumber.R"
    app.write_text(app.read_text() + "\n# changed\n")
    up("one app's code changed", base)
    more = copy.deepcopy(base)
    more["apps"][42]["workers"] = 3
    up("one app's workers 1 -> 3", more)
    added = copy.deepcopy(more)
    added["apps"].append({**more["apps"][0], "name": "app999", "path": "/app999", "port": 12000 + 10 * COUNT_APPS})
    up("one app added", added)
    up("one app removed", more)
    return out


def run(work: Path, log: Any = print) -> tuple[list[ScaleResult], list[CountResult]]:
    work.mkdir(parents=True, exist_ok=True)
    key = make_key(work)
    sizes = []
    for n in SIZES:
        r = time_program(n, work, key)
        log(f"  {n:4d} apps: {r.resources} resources, {r.commands} commands, evaluation {r.seconds:.2f}s "
            f"(CPU {r.cpu_seconds:.2f}s), process {r.process_seconds:.2f}s (median of {REPEATS})")
        sizes.append(r)
    counts = command_counts(work, key)
    for c in counts:
        log(f"  {c.change}: {len(c.ran)} command(s)")
    return sizes, counts


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--evaluate":
        _evaluate(sys.argv[2])
    else:
        import tempfile

        run(Path(tempfile.mkdtemp(prefix="bench-scale-")))
