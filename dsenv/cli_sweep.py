"""`dsenv sweep`: a notebook run over a parameter grid on a backend (local, slurm, k8s); status, collect, cancel,
retry. `dsenv sweep NOTEBOOK -p NAME V1 V2 ...` is short for `dsenv sweep run NOTEBOOK ...`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click


class _SweepGroup(click.Group):
    """A group whose first argument may be a notebook: then the `run` subcommand is meant."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """`dsenv sweep NOTEBOOK ...` -> `dsenv sweep run NOTEBOOK ...`."""
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_SweepGroup)
def sweep() -> None:
    """Run a notebook over a parameter grid (papermill in the environment's image) and gather the results.

    \b
    dsenv sweep train.ipynb -p lr 0.1 0.01 -p depth 4 8 --on local -j 2
    dsenv sweep train.ipynb -p lr 0.1 0.01 --on slurm:gpu --gpus 1 --registry reg:5000 --out results/
    dsenv sweep status|collect|cancel|retry SWEEP_ID
    """


def _progress():
    from .cli_containers import _Progress

    return _Progress(False, False)


def _counts(quiet: bool):
    """A status callback for --wait: one line each time the counts of states change."""
    last: list[str] = []

    def show(states) -> None:
        counts: dict[str, int] = {}
        for x in states:
            counts[x.state] = counts.get(x.state, 0) + 1
        line = ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items()))
        if line != (last[0] if last else None) and not quiet:
            click.echo(line, err=True)
        last[:] = [line]

    return show


@sweep.command("run", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("notebook", type=click.Path(path_type=Path))
@click.argument("grid", nargs=-1, type=click.UNPROCESSED, metavar="[-p NAME V1 [V2 ...]]...")
@click.option("-f", "--grid-file", "files", multiple=True, help="A YAML grid: name: [values] (or a list of sets).")
@click.option("--on", "on", default="local", show_default=True, help="Backend: local, slurm[:PARTITION], k8s[:CONTEXT].")
@click.option("-j", "--jobs", type=int, default=1, show_default=True, help="Local backend: tasks at a time.")
@click.option("--out", type=click.Path(path_type=Path), help="Output folder (default: .sweeps/STEM beside the notebook).")
@click.option("--gpus", help="GPUs per task (N; the local backend also takes all or UUIDs).")
@click.option("--cpus", type=float, help="CPUs per task.")
@click.option("--memory", help="Memory per task, e.g. 16g.")
@click.option("--time", "time_limit", help="Time limit per task (Slurm's format, e.g. 01:00:00).")
@click.option("--registry", help="Registry every node pulls from (slurm, k8s): the image is pushed there once.")
@click.option("--image", help="Run in this image instead of building the notebook's environment.")
@click.option("--timeout", type=int, default=600, show_default=True, help="Seconds a cell may run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of NumPy's global random state.")
@click.option("--force", is_flag=True, help="Run parameter sets again even if their output exists.")
@click.option("--wait", "wait_", is_flag=True, help="Queued backends: poll until every task has finished.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run(notebook: Path, grid: tuple[str, ...], files, on, jobs, out, gpus, cpus, memory, time_limit, registry, image,
        timeout, seed, force, wait_, as_json) -> None:
    """Run NOTEBOOK once per parameter set of the grid; prints the sweep id.

    Each `-p NAME V1 [V2 ...]` is an axis (values typed as papermill's -p types them); the grid is their product,
    crossed with the parameter sets of -f files.
    """
    from . import sweep as sw
    from .sweep.grid import parse_axes

    axes = parse_axes(list(grid))
    result = sw.submit(notebook, axes=axes, files=list(files), on=on, out=out, jobs=jobs, gpus=gpus, cpus=cpus,
                       memory=memory, time_limit=time_limit, registry=registry, image=image, timeout=timeout,
                       seed=seed, force=force, on_event=_progress(),
                       on_message=None if as_json else (lambda m: click.echo(m, err=True)))
    s = result.sweep
    states = sw.wait(s.id, on_change=_counts(as_json)) if wait_ and result.submitted else None
    if as_json:
        click.echo(json.dumps({"id": s.id, "out": s.out, "image": s.image, "backend": s.backend,
                               "submitted": [t.index for t in result.submitted],
                               "skipped": [t.index for t in result.skipped],
                               "running": [t.index for t in result.running], "submission": result.submission,
                               **({"states": {x.name: x.state for x in states}} if states else {})}, indent=2))
        return
    click.echo(f"sweep {s.id}: {len(s.tasks)} parameter sets, {len(result.submitted)} submitted to {s.backend}, "
               f"{len(result.skipped)} already done"
               + (f", {len(result.running)} still queued or running" if result.running else "")
               + f" (image {s.image['ref'][:80]}); outputs in {s.out}", err=True)
    if result.submission.get("job_id") and not result.submission["job_id"].startswith("local"):
        click.echo(f"job {result.submission['job_id']}", err=True)
    click.echo(s.id)
    if states is not None or (result.submission.get("exit_codes") is not None):
        failed = [x for x in (states or sw.status(s.id)[1]) if x.state != "COMPLETED"]
        if failed:
            click.echo(f"{len(failed)} task(s) did not complete: see 'dsenv sweep status {s.id}'", err=True)
            sys.exit(1)


@sweep.command()
@click.argument("sweep_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status(sweep_id: str, as_json: bool) -> None:
    """Per task: parameters, state, node, elapsed time, exit code."""
    from . import sweep as sw

    s, states = sw.status(sweep_id)
    if as_json:
        click.echo(json.dumps({"id": s.id, "backend": s.backend, "tasks": [x.__dict__ for x in states]}, indent=2,
                              default=str))
        return
    rows = [("task", "parameters", "state", "node", "elapsed", "exit", "job")]
    for x in states:
        params = " ".join(f"{k}={v}" for k, v in x.parameters.items())
        rows.append((str(x.index), params, x.state, x.node or "-",
                     f"{x.elapsed:.1f}s" if isinstance(x.elapsed, (int, float)) else "-",
                     "-" if x.exit_code is None else str(x.exit_code), x.job_id or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    click.echo(f"sweep {s.id} on {s.backend}: {s.out}")
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    counts: dict[str, int] = {}
    for x in states:
        counts[x.state] = counts.get(x.state, 0) + 1
    click.echo(", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())))


@sweep.command()
@click.argument("sweep_id")
@click.option("--json", "as_json", is_flag=True, help="Rows as JSON (parameters, records, provenance).")
@click.option("--csv", "as_csv", is_flag=True, help="Rows as CSV.")
def collect(sweep_id: str, as_json: bool, as_csv: bool) -> None:
    """One row per parameter set: its parameters, the values the notebook recorded, and provenance."""
    from .sweep import results as c

    rows = c.collect(sweep_id)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    elif as_csv:
        click.echo(c.to_csv(rows), nl=False)
    else:
        click.echo(c.to_table(rows))


@sweep.command()
@click.argument("sweep_id")
def cancel(sweep_id: str) -> None:
    """Cancel the sweep's queued and running tasks (their containers are removed)."""
    from . import sweep as sw

    done = sw.cancel(sweep_id)
    click.echo(f"cancelled {', '.join(done) if done else 'nothing (no task queued or running)'}", err=True)


@sweep.command()
@click.argument("sweep_id")
@click.argument("task", required=False)
@click.option("--wait", "wait_", is_flag=True, help="Queued backends: poll until the retried tasks have finished.")
def retry(sweep_id: str, task: str | None, wait_: bool) -> None:
    """Run again one TASK (index or name) or every failed, cancelled or lost task, with the sweep's settings."""
    from . import sweep as sw

    result = sw.retry(sweep_id, task, on_message=lambda m: click.echo(m, err=True))
    if not result.submitted:
        click.echo("nothing to retry: every task completed or is still queued/running", err=True)
        return
    click.echo(f"resubmitted {len(result.submitted)} task(s): {', '.join(str(t.index) for t in result.submitted)}",
               err=True)
    if wait_:
        sw.wait(sweep_id, on_change=_counts(False))
