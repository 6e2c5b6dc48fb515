#!/usr/bin/env python3
"""Round trip of a trivial `%%dsenv run` cell (`1+1`) against the same statement through `docker exec python -c`.

    python bench/cell_speed.py [--folder notebooks] [--runs 50]

Both go to the same environment image, built beforehand. dsenv: an IPython shell with the extension loaded; the
first cell starts the kernel container (not timed), then each timed cell is `%%dsenv run` + `1+1` until its
result is back in the local shell. docker exec: a container of the same image, `docker exec CID python -c
'print(1+1)'` through the docker CLI, the way a user scripts it without dsenv. Reports medians, best and the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def time_cells(folder: Path, runs: int) -> list[float]:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "dsenv")
    magics = shell.magics_manager.registry["DsenvMagics"]
    cell = f"%%dsenv run --env {folder}\n1+1"
    try:
        with capture_output() as warm:
            shell.run_cell(cell)
        if [o.data for o in warm.outputs] != [{"text/plain": "2"}]:
            sys.exit(f"bench: the warm-up cell gave {warm.outputs} {warm.stderr}")
        times = []
        for _ in range(runs):
            with capture_output() as out:
                start = time.perf_counter()
                shell.run_cell(cell)
                times.append(time.perf_counter() - start)
            assert out.outputs[0].data == {"text/plain": "2"}
        return times
    finally:
        magics.close()


def time_exec(image: str, runs: int) -> list[float]:
    cid = subprocess.run(["docker", "run", "-d", "--rm", "--init", image, "sleep", "600"], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        subprocess.run(["docker", "exec", cid, "python", "-c", "print(1+1)"], check=True, capture_output=True)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            out = subprocess.run(["docker", "exec", cid, "python", "-c", "print(1+1)"], capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            assert out.stdout.strip() == "2", out
        return times
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=REPO / "notebooks")
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    from dsenv import api

    built = api.build(args.folder)
    print(f"image {built.tag} ({'built' if built.built else 'up to date'})")
    cells = time_cells(args.folder.resolve(), args.runs)
    execs = time_exec(built.tag, args.runs)
    ms = lambda xs: f"median {statistics.median(xs) * 1000:7.1f} ms  best {min(xs) * 1000:6.1f} ms"  # noqa: E731
    print(f"%%dsenv run '1+1'          {ms(cells)}   (n={len(cells)})")
    print(f"docker exec python -c      {ms(execs)}   (n={len(execs)})")
    print(f"ratio dsenv / docker exec  {statistics.median(cells) / statistics.median(execs):.3f}")


if __name__ == "__main__":
    main()
