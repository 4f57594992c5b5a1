"""make bench: serving throughput, proxy overhead and program scale, side by side.

    python -m bench            # everything; uses the lab (starts it if down, stops it again)
    python -m bench --no-lab   # program scale only

Writes bench/results.md and bench/results.png and prints the tables.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import report, scale, serving, state

HERE = Path(__file__).resolve().parent


def load() -> str:
    """The 1, 5 and 15 minute load averages (two cores: 2.0 is a fully busy machine)."""
    return ", ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--no-lab", action="store_true", help="program scale only (no lab host)")
    parser.add_argument("--out", type=Path, default=HERE / "results.md", help="markdown file (the PNG goes beside it)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    context = []
    try:
        print("program scale (under mocks, no host)", flush=True)
        context.append(f"Load average of the machine when the program-scale part started: {load()}.")
        sizes, counts = scale.run(work / "scale", log=lambda s: print(s, flush=True))
        results = None
        if not args.no_lab:
            print("serving (lab host)", flush=True)
            context.append(f"Load average when the serving part started: {load()}.")
            results = serving.run(log=lambda s: print(s, flush=True))
        transport = state.run(work / "state", lab=not args.no_lab, log=lambda s: print(s, flush=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    text = report.markdown(
        results, sizes, counts,
        command=os.environ.get("BENCH_COMMAND", "make bench" if not args.no_lab else "python -m bench --no-lab"),
        date=time.strftime("%Y-%m-%d"),
        repeats=scale.REPEATS,
        context=[" ".join(context), ""],
    )
    text += "\n" + "\n".join(state.markdown(*transport)) + "\n"
    args.out.write_text(text)
    png = args.out.with_suffix(".png")
    report.plot(results, sizes, png)
    state.plot(*transport, png.with_name(png.stem + "-transport.png"))
    print("\n" + text)
    print(f"wrote {args.out}, {png} and {png.stem}-transport.png in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
