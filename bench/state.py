"""make bench, app transport: what one app's code costs in the Pulumi state, and how long it takes to reach the server.

    python -m bench.state            # state (program under mocks) and copy/deploy seconds on the lab host
    python -m bench.state --no-lab   # state only

State: the program runs under Pulumi's mocks with one app holding an N MiB incompressible data file (an .rds
model, say). Each of the app's resources is written out as the engine's checkpoint holds it
(apitype.ResourceV3, sdk/go/common/apitype/core.go): inputs and outputs (a Command's outputs are its inputs
plus stdout and stderr, remote/commandOutputs.go; CopyToRemote's outputs are its inputs, remote/copy.go:84-86),
each secret encrypted on its own as the passphrase secrets manager does (pkg/resource/stack/deployment.go,
SerializePropertyValue: json.Marshal of the value, then config/crypt.go:179-183, AES-256-GCM, "v1:nonce:ct" in
base64), an asset as {sig, hash, path} (asset.go Serialize), compact JSON as the DIY backend writes it
(pkg/backend/diy/state.go, compactJSONMarshaler). "Before" is the design this replaced, computed: the deploy
command's stdin held base64 of a tar.gz of the code and the env file (gzip -9).

Seconds (lab host): beside another app, the app is deployed, takes a one-line code change, rolls back, and
is removed, through tests/engine.py; the copy is compared with a plain `scp` of the same tar to the same host.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from components.bundle import _files
from tests.conftest import local_overrides
from tests.program import Declared, ProgramRun, run_program, stack_config

ROOT = Path(__file__).resolve().parent.parent
SIZES_MB = (1, 10, 50)
APP = "big"
STATE_GOAL = 2048  # bytes of state carrying one app's code, at any size
COPY_GOAL = 1.5  # CopyToRemote seconds / scp seconds, same bytes, same host
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # resource.SecretSig
ASSET_SIG = "c44067f5952c0a294b673a41bacd8c17"  # asset.AssetSig
KEY = AESGCM.generate_key(bit_length=256)


# ---------------------------------------------------------------- the app


def make_app(root: Path, mb: int) -> Path:
    """examples/hello plus data/model.bin: mb MiB of random (incompressible) bytes."""
    src = root / f"{APP}{mb}"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(ROOT / "examples" / "hello", src)
    (src / "data").mkdir()
    rng = random.Random(mb)
    with (src / "data" / "model.bin").open("wb") as f:
        for _ in range(mb):
            f.write(rng.randbytes(1 << 20))
    return src


def legacy_payload(source: Path, env_file: str) -> str:
    """The deploy's stdin before issue 13: base64 of a tar.gz (level 9) of app/<files> and app.env."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [
            (f"app/{p.relative_to(source).as_posix()}", p.read_bytes(), 0o755 if p.stat().st_mode & 0o111 else 0o644)
            for p in _files(source)
        ]
        for name, data, mode in [*entries, ("app.env", env_file.encode(), 0o600)]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), mode, 0, 0, 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)).decode()


def app_config(source: Path, host: dict[str, Any] | None = None, key_file: str | None = None) -> dict[str, Any]:
    cfg = {**stack_config("local"), **local_overrides()}
    if host is not None:
        cfg["host"] = host
    if key_file is not None:
        cfg["ssh_private_key_file"] = key_file
    cfg.pop("forward_root", None)
    cfg["apps"] = [{"name": APP, "source": str(source), "workers": 1, "health_path": "/health"}]
    return cfg


# ---------------------------------------------------------------- the state, as the engine writes it


def _go_json(value: Any) -> str:
    """encoding/json.Marshal: compact, and <, >, & escaped (the default for a secret's plaintext)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _encrypt(plaintext: str) -> str:
    nonce = os.urandom(12)
    ct = AESGCM(KEY).encrypt(nonce, plaintext.encode(), None)
    return f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(ct).decode()}"


def _value(value: Any, root: Path) -> Any:
    if isinstance(value, pulumi.FileAsset):
        # the engine's hash of the file (asset.go EnsureHashWithWD), relative to the project directory
        import hashlib

        digest = hashlib.sha256()
        with (root / value.path).open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return {"4dabf18193072939515e22adb298388d": ASSET_SIG, "hash": digest.hexdigest(), "path": value.path}
    if isinstance(value, dict):
        return {k: _value(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v, root) for v in value]
    return value


def _props(props: dict[str, Any], secret: set[str], root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in props.items():
        plain = _value(v, root)
        if k in secret:
            out[k] = {"4dabf18193072939515e22adb298388d": SECRET_SIG, "ciphertext": _encrypt(_go_json(plain))}
        else:
            out[k] = plain
    return out


def checkpoint_record(res: Declared, *, root: Path, outputs_extra: dict[str, Any], secret_outputs: set[str]) -> str:
    """One resource as the DIY checkpoint holds it (compact JSON, HTML not escaped)."""
    inputs = dict(res.inputs)
    record = {
        "urn": res.urn,
        "custom": True,
        "id": os.urandom(8).hex(),  # resource.NewUniqueHex("", 8, 0)
        "type": res.type,
        "inputs": _props(inputs, res.secret_inputs, root),
        "outputs": _props({**inputs, **outputs_extra}, res.secret_inputs | secret_outputs, root),
        "parent": res.parent,
        "dependencies": res.dependencies,
        "provider": "urn:pulumi:local::plumber-hosting::pulumi:providers:command::default_1_2_1::"
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
        "propertyDependencies": {k: [] for k in inputs},
        "created": "2026-01-01T00:00:00.000000000Z",
        "modified": "2026-01-01T00:00:00.000000000Z",
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


@dataclass
class StateRow:
    mb: int
    bundle_before: int  # bytes of the base64 tar.gz the deploy's stdin held
    bundle_after: int  # bytes of the tar CopyToRemote copies
    before_total: int  # the app's records: the deploy command
    after_total: int  # the deploy command and the upload
    before_code: int  # of which the fields carrying the code: stdin, in inputs and outputs
    after_code: int  # source and remotePath, in inputs and outputs
    upload_record: int  # the whole <app>-upload record (its encrypted connection included)


def _field_bytes(record: str, keys: tuple[str, ...]) -> int:
    doc = json.loads(record)
    return sum(len(json.dumps(doc[part][k], separators=(",", ":"), ensure_ascii=False))
               for part in ("inputs", "outputs") for k in keys if k in doc[part])


def state_row(mb: int, source: Path, run: ProgramRun) -> StateRow:
    deploy = run.named(f"{APP}-deploy")
    upload = run.named(f"{APP}-upload")
    outs = {"stdout": json.dumps({"app": APP, "release": "x" * 12, "ports": "12000"}), "stderr": ""}
    after_deploy = checkpoint_record(deploy, root=ROOT, outputs_extra=outs, secret_outputs=set())
    after_upload = checkpoint_record(upload, root=ROOT, outputs_extra={}, secret_outputs={"connection"})
    legacy = legacy_payload(source, deploy.inputs["stdin"])
    old = Declared(**{**deploy.__dict__, "inputs": {**deploy.inputs, "stdin": legacy},
                      "dependencies": [d for d in deploy.dependencies if d != upload.urn]})
    before_deploy = checkpoint_record(old, root=ROOT, outputs_extra=outs, secret_outputs=set())
    tar = ROOT / upload.inputs["source"].path
    return StateRow(
        mb=mb,
        bundle_before=len(legacy),
        bundle_after=tar.stat().st_size,
        before_total=len(before_deploy),
        after_total=len(after_deploy) + len(after_upload),
        before_code=_field_bytes(before_deploy, ("stdin",)),
        after_code=_field_bytes(after_upload, ("source", "remotePath")),
        upload_record=len(after_upload),
    )


def measure_state(work: Path, log: Callable[[str], None] = print) -> list[StateRow]:
    rows = []
    for mb in SIZES_MB:
        source = make_app(work, mb)
        run = run_program(app_config(source), stack="local")
        rows.append(state_row(mb, source, run))
        log(f"  {mb} MiB: state before {rows[-1].before_total} B, after {rows[-1].after_total} B")
        shutil.rmtree(source)
        (ROOT / run.named(f"{APP}-upload").inputs["source"].path).unlink()  # the bench's bundle, not a user's
    return rows


# ---------------------------------------------------------------- seconds on the lab host


@dataclass
class TimeRow:
    mb: int
    tar_bytes: int
    scp_s: float
    copy_s: float  # <app>-upload (CopyToRemote over SFTP) on the first deploy
    deploy_s: float  # <app>-deploy on the first deploy: verify, unpack, start, health-gate, switch
    unpack_s: float  # of which: sha256sum and tar -x of the bundle on the host, timed alone
    first_s: float  # whole `up` for the first deploy
    change_s: float  # whole `up` for a one-line code change
    rollback_s: float  # whole `up` back to the first release (kept on the server: copied, not unpacked)
    rollback_copy_s: float
    remove_s: float  # whole `up` without the app
    ran: dict[str, list[str]] = field(default_factory=dict)


def _step(result: Any, name: str) -> float:
    return sum(s.seconds for s in result.steps if s.name == name)


def measure_times(work: Path, log: Callable[[str], None] = print) -> list[TimeRow]:
    from tests.engine import Engine
    from tests.lab.lab import Lab

    lab = Lab()
    started = not lab.is_up()
    if started:
        lab.up(1)
    rows: list[TimeRow] = []
    try:
        h = lab.state.hosts[0]  # type: ignore[union-attr]
        host = {"address": h.address, "user": "root", "port": 22}
        engine = Engine(work / "state.json")
        other = {"name": "hello", "source": "examples/hello", "health_path": "/health"}
        base = app_config(ROOT / "examples" / "hello", host=host, key_file=h.key_path)
        base["apps"] = [other]
        engine.deploy(base, stack="local")  # provisioned, with another app: what is timed is the big app alone
        for mb in SIZES_MB:
            source = make_app(work, mb)
            cfg = app_config(source, host=host, key_file=h.key_path)
            cfg["apps"].insert(0, other)
            t0 = time.monotonic()
            program, first = engine.deploy(cfg, stack="local")
            first_s = time.monotonic() - t0
            tar = ROOT / program.named(f"{APP}-upload").inputs["source"].path
            scp_s = _scp(h.key_path, h.address, tar)
            unpack_s = _unpack_on_host(lab, h.name, tar.name)
            plumber = source / "plumber.R"
            original = plumber.read_text()
            plumber.write_text(original + "\n# one-line change\n")
            t0 = time.monotonic()
            changed, change = engine.deploy(cfg, stack="local")
            change_s = time.monotonic() - t0
            bundles = [tar, ROOT / changed.named(f"{APP}-upload").inputs["source"].path]
            plumber.write_text(original)
            t0 = time.monotonic()
            _, back = engine.deploy(cfg, stack="local")
            rollback_s = time.monotonic() - t0
            t0 = time.monotonic()
            _, gone = engine.deploy(base, stack="local")
            remove_s = time.monotonic() - t0
            rows.append(TimeRow(
                mb=mb, tar_bytes=tar.stat().st_size, scp_s=scp_s,
                copy_s=_step(first, f"{APP}-upload"), deploy_s=_step(first, f"{APP}-deploy"), unpack_s=unpack_s,
                first_s=first_s, change_s=change_s, rollback_s=rollback_s,
                rollback_copy_s=_step(back, f"{APP}-upload"), remove_s=remove_s,
                ran={"first": first.ran, "change": change.ran, "rollback": back.ran, "remove": gone.ran},
            ))
            log(f"  {mb} MiB: copy {rows[-1].copy_s:.2f} s, scp {scp_s:.2f} s, deploy {rows[-1].deploy_s:.2f} s; "
                f"steps {rows[-1].ran}")
            shutil.rmtree(source)
            for b in bundles:  # the bench's bundles, not a user's
                b.unlink(missing_ok=True)
        engine.destroy()
    finally:
        if started:
            lab.down()
    return rows


def _scp(key: str, address: str, tar: Path) -> float:
    """A plain scp of the same bytes to the same host (best of two)."""
    best = float("inf")
    for _ in range(2):
        t0 = time.monotonic()
        subprocess.run(
            ["scp", "-q", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", str(tar), f"root@{address}:/tmp/ph-bench.tar"],
            check=True, timeout=600,
        )
        best = min(best, time.monotonic() - t0)
    return best


def _unpack_on_host(lab: Any, name: str, tar_name: str) -> float:
    """What the deploy script adds per byte: sha256sum and tar -x of the bundle on the host."""
    script = (
        "set -e; d=$(mktemp -d); t0=$(date +%s.%N); "
        f"sha256sum /root/.plumber-hosting/uploads/{APP}/{tar_name} >/dev/null; "
        f"tar -xf /root/.plumber-hosting/uploads/{APP}/{tar_name} -C \"$d\"; "
        "t1=$(date +%s.%N); rm -rf \"$d\" /tmp/ph-bench.tar; echo \"$t0 $t1\""
    )
    out = lab.ssh(name, script, check=True).stdout
    t0, t1 = (float(x) for x in (out.decode() if isinstance(out, bytes) else out).split())
    return t1 - t0


# ---------------------------------------------------------------- report


def kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):,.1f} MiB"


def markdown(states: list[StateRow], times: list[TimeRow] | None) -> list[str]:
    lines = ["## App transport (issue 13): the code outside the Pulumi state", ""]
    lines += [
        "State bytes attributable to one app (the DIY checkpoint's records for its resources; before: the design this "
        "replaced, computed; after: `<app>-deploy` + `<app>-upload`). \"Code\" counts the fields that carry the code: "
        "the deploy's `stdin` before, the upload's `source` and `remotePath` after, in inputs and outputs.",
        "",
        "| app | before: state | after: state | ratio | before: code in state | after: code in state | "
        "after: `<app>-upload` record | goal: code ≤ 2 KiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in states:
        met = "met" if r.after_code <= STATE_GOAL else "**MISSED**"
        lines.append(
            f"| {r.mb} MiB | {kib(r.before_total)} | {kib(r.after_total)} | {r.before_total / r.after_total:,.0f}× | "
            f"{kib(r.before_code)} | {r.after_code} B | {kib(r.upload_record)} | {met} |"
        )
    growth = states[-1].after_total - states[0].after_total
    lines += [
        "",
        f"After, the state grows by {growth} B from {states[0].mb} to {states[-1].mb} MiB (asset hash and paths have "
        "fixed lengths). The upload record is mostly its encrypted `connection` (the SSH key), which every "
        "command resource holds as well. Before, every MiB of gzipped code cost "
        f"{states[-1].before_code / states[-1].bundle_before * 4 / 3:.2f} MiB of state (inputs and outputs, each "
        "encrypted), per replica; "
        "the DIY backend rewrites the whole checkpoint on each step and keeps each update in its history. "
        "(Before, each app also had an `<app>-probe` command, a few KiB, not counted.)",
        "",
    ]
    if times:
        lines += [
            "Seconds on the lab host (tests/engine.py; the copy is pulumi-command's CopyToRemote over SFTP as the "
            "engine carries it out): first deploy, then a one-line code change, then a rollback to the first release "
            "(still on the server, so copied again but not unpacked), then its removal; another app (hello) serves "
            "throughout. Seconds are wall time of the engine's steps and of whole `up`s.",
            "",
            "| app | tar | scp | copy | copy / scp | deploy script | of which sha256 + untar | first `up` | "
            "code change `up` | rollback `up` (copy) | removal `up` |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in times:
            lines.append(
                f"| {t.mb} MiB | {kib(t.tar_bytes)} | {t.scp_s:.2f} | {t.copy_s:.2f} | {t.copy_s / t.scp_s:.2f}× | "
                f"{t.deploy_s:.2f} | {t.unpack_s:.2f} | {t.first_s:.1f} | {t.change_s:.1f} | "
                f"{t.rollback_s:.1f} ({t.rollback_copy_s:.2f}) | {t.remove_s:.1f} |"
            )
        big = times[-1]
        mark = "met" if big.copy_s / big.scp_s <= COPY_GOAL else "**MISSED**"
        lines += [
            "",
            f"Goal: the {big.mb} MiB deploy bounded by the copy: copy / scp = {big.copy_s / big.scp_s:.2f}× "
            f"(≤ {COPY_GOAL}×: {mark}); what the deploy script adds per byte (sha256 + untar) is {big.unpack_s:.2f} s, "
            "the rest of it is starting and health-gating the R worker, the same at any size.",
            "",
        ]
    return lines


def plot(states: list[StateRow], times: list[TimeRow] | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if times else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4.2))
    axes = list(axes) if panels > 1 else [axes]
    mb = [r.mb for r in states]
    ax = axes[0]
    ax.plot(mb, [r.before_total / 1024 for r in states], "o-", label="before: stdin bundle")
    ax.plot(mb, [r.after_total / 1024 for r in states], "s-", label="after: CopyToRemote")
    ax.set_yscale("log")
    ax.set_xlabel("app size (MiB)")
    ax.set_ylabel("state for one app (KiB, log)")
    ax.set_title("Pulumi state per app")
    ax.legend()
    if times:
        ax = axes[1]
        tm = [t.mb for t in times]
        ax.plot(tm, [t.scp_s for t in times], "o-", label="scp")
        ax.plot(tm, [t.copy_s for t in times], "s-", label="CopyToRemote (SFTP)")
        ax.plot(tm, [t.deploy_s for t in times], "^-", label="deploy script")
        ax.set_xlabel("app size (MiB)")
        ax.set_ylabel("seconds")
        ax.set_title("Copy and deploy on the lab host")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(work: Path, *, lab: bool, log: Callable[[str], None] = print) -> tuple[list[StateRow], list[TimeRow] | None]:
    log("app transport: state under mocks")
    states = measure_state(work, log)
    times = None
    if lab:
        log("app transport: copy and deploy on the lab host")
        times = measure_times(work, log)
    return states, times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state", description=__doc__.splitlines()[0])
    parser.add_argument("--no-lab", action="store_true", help="state only (no lab host)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "state-results.md")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-state-"))
    try:
        states, times = run(work, lab=not args.no_lab, log=lambda s: print(s, flush=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = [f"# make bench-transport ({time.strftime('%Y-%m-%d')})", "",
            f"Produced by: `{os.environ.get('BENCH_COMMAND', 'python -m bench.state')}`", ""]
    text = "\n".join([*head, *markdown(states, times)]) + "\n"
    args.out.write_text(text)
    plot(states, times, args.out.with_suffix(".png"))
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
