"""The `dsenv` command line: thin wrappers over dsenv.api; errors as one line, no traceback unless --debug."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__, api
from .cli_containers import CONTAINER_COMMANDS, _host, _Progress
from .errors import DsenvError, mask_credentials


class _Group(click.Group):
    """Prints DsenvErrors as one line with their hint and exits with their code; --debug shows the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DsenvError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"dsenv: error: {e.one_line()}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("dsenv: interrupted", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as e:  # a bug, not a user error: still one line unless --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"dsenv: internal error: {type(e).__name__}: {mask_credentials(str(e))} (hint: rerun with --debug "
                       "and report it)", err=True)
            ctx.exit(70)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and full tool output on errors.")
@click.version_option(__version__, prog_name="dsenv")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Turn Jupyter notebooks into reproducible Docker images and run them."""
    ctx.obj = {"debug": debug}


_path = click.argument("path", type=click.Path(path_type=Path), default=".")
_as_of = click.option("--as-of", metavar="DATE", help="Resolve with packages published up to DATE (YYYY-MM-DD).")
_upgrade = click.option("--upgrade", is_flag=True, help="Resolve again even if the lock is current.")
_cuda = click.option("--cuda", metavar="X.Y", help="Cap torch builds and nvidia/cuda bases at this CUDA version "
                     "(default: DSENV_CUDA or the config, else this host's NVIDIA driver).")


def _image_options(full_help: str, bake_help: str):
    """The options plan and build share: path, --as-of, --upgrade, --cuda, --full, --bake."""
    def decorate(f):
        for option in reversed((_path, _as_of, _upgrade, _cuda, click.option("--full", is_flag=True, help=full_help),
                                click.option("--bake", is_flag=True, help=bake_help))):
            f = option(f)
        return f
    return decorate


def _origin(sources: tuple[str, ...]) -> str:
    shown = list(sources[:3])
    return "; ".join(shown) + (f"; +{len(sources) - 3} more" if len(sources) > 3 else "")


@main.command()
@_image_options("Show the full Dockerfile even where an incremental build applies.",
                "Plan an image with the notebooks copied in.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(path: Path, as_of: str | None, upgrade: bool, cuda: str | None, full: bool, bake: bool,
         as_json: bool) -> None:
    """Show requirements and where each came from, the lock, the Dockerfile and the image tag, without building."""
    p = api.plan(path, as_of=as_of, full=full, bake=bake, upgrade=upgrade, show=True, cuda=cuda)
    s = p.spec
    if as_json:
        click.echo(json.dumps({
            "target": str(p.target.path), "python": s.python, "python_source": s.python_source,
            "requirements": [{"requirement": r.requirement, "sources": list(r.sources)} for r in s.requirements],
            "apt": [{"name": a.name, "sources": list(a.sources)} for a in s.apt],
            "indexes": [{"kind": i.kind, "url": i.shown, "source": i.source} for i in s.indexes],
            "base": p.base, "base_id": p.base_id, "lock": {"path": str(p.target.lock_path), "state": p.lock_state,
            "packages": {x.name: x.version for x in p.lock.packages}}, "dockerfile": p.build.dockerfile,
            "tag": p.build.tag, "up_to_date": p.image_exists, "incremental_over": p.build.delta_parent, "notes": p.notes,
        }, indent=2))
        return
    kind = "notebook" if p.target.single else f"folder, {len(p.target.notebooks)} notebook(s)"
    click.secho(f"Environment {p.target.name} ({kind}: {p.target.path})", bold=True)
    click.echo(f"Python {s.python}  [{s.python_source}]")
    click.echo(f"Base   {p.base}  [{s.base_source if s.base else 'config'}] {p.base_id[:19]}")
    click.secho("\nRequirements", bold=True)
    width = max([len(r.requirement) for r in s.requirements] + [10])
    for r in s.requirements:
        click.echo(f"  {r.requirement:<{width}}  {_origin(r.sources)}")
    if not s.requirements:
        click.echo("  (none)")
    for index in s.indexes:
        click.echo(f"  --{index.kind} {index.shown}  [{index.source}]")
    click.secho("\nApt packages", bold=True)
    for a in s.apt:
        click.echo(f"  {a.name:<{width}}  {_origin(a.sources)}")
    if not s.apt:
        click.echo("  (none)")
    for note in p.notes:
        click.echo(f"note: {note}")
    click.secho(f"\nLock {p.target.lock_path} [{p.lock_state}] for {p.platform}", bold=True)
    env = [x for x in p.lock.packages if not x.runtime_only]
    click.echo("  " + "  ".join(f"{x.name}=={x.version}" for x in env) if env else "  (no packages)")
    runtime = [x for x in p.lock.packages if x.runtime_only]
    click.echo(f"  + Jupyter runtime ({s.jupyter}): {len(runtime)} packages, e.g. "
               + ", ".join(f"{x.name}=={x.version}" for x in runtime if x.name in {"jupyterlab", "ipykernel", "papermill", "notebook"}))
    click.secho("\nDockerfile" + (f" (incremental over {p.build.delta_parent})" if p.build.delta_parent else ""), bold=True)
    click.echo("\n".join("  " + line for line in p.build.dockerfile.rstrip().splitlines()))
    state = "up to date" if p.image_exists else ("to build incrementally" if p.build.delta_parent else "to build")
    click.secho(f"\nImage {p.build.tag}  [{state}]", bold=True)


@main.command()
@_path
@_as_of
@_upgrade
@_cuda
def lock(path: Path, as_of: str | None, upgrade: bool, cuda: str | None) -> None:
    """Resolve exact versions (with hashes) for the target Python and Linux, and write dsenv.lock."""
    where, lk, state = api.lock(path, as_of=as_of, upgrade=upgrade, cuda=cuda)
    verb = {"current": "is up to date", "new": "written", "stale": "updated"}[state]
    click.echo(f"{where} {verb}: {len(lk.packages)} packages")


@main.command()
@_host
@_image_options("Build from the base, never incrementally over a previous image.",
                "Copy the notebook folder into the image (for a self-contained image to push).")
@click.option("--no-cache", is_flag=True, help="Do not reuse the builder's cached layers.")
@click.option("--check", is_flag=True, help="After building, import every module the notebooks import inside the image.")
@click.option("--json", "as_json", is_flag=True, help="Progress and result as JSON lines.")
@click.option("-v", "--verbose", is_flag=True, help="Show every line of build output.")
def build(path: Path, as_of: str | None, upgrade: bool, cuda: str | None, full: bool, bake: bool, no_cache: bool,
          check: bool, as_json: bool, verbose: bool) -> None:
    """Build the environment's image through the Docker daemon (nothing is built when it is up to date)."""
    result = api.build(path, as_of=as_of, upgrade=upgrade, full=full, bake=bake, no_cache=no_cache,
                       on_event=_Progress(as_json, verbose), cuda=cuda)
    failed: dict[str, str] = {}
    if check:
        failed = api.check_imports(result.tag, result.plan.spec.imports)
    if as_json:
        click.echo(json.dumps({"event": "done", "tag": result.tag, "image_id": result.image_id, "built": result.built,
                               "incremental": result.delta, "seconds": round(result.seconds, 3),
                               **({"import_failures": failed} if check else {})}))
    else:
        if result.built:
            how = " incrementally" if result.delta else ""
            click.echo(f"built{how} {result.tag} in {result.seconds:.1f} s", err=True)
        else:
            click.echo(f"up to date, nothing to build ({result.seconds:.2f} s)", err=True)
        if check:
            mods = ", ".join(result.plan.spec.imports) or "(none)"
            if failed:
                for m, err in failed.items():
                    click.echo(f"check: import {m} failed in the image: {err}", err=True)
            else:
                click.echo(f"check: every import of the notebooks works in the image: {mods}", err=True)
        click.echo(result.tag)
    if failed:
        sys.exit(8)


@main.command()
@_path
@click.argument("dest", type=click.Path(path_type=Path))
@_as_of
@click.option("--buildkit", is_flag=True, help="Write the BuildKit variant (uv cache mounts; needs DOCKER_BUILDKIT=1).")
def export(path: Path, dest: Path, as_of: str | None, buildkit: bool) -> None:
    """Write the Dockerfile and its build context to DEST, for `docker build DEST` anywhere."""
    out, tag = api.export(path, dest, buildkit=buildkit, as_of=as_of)
    click.echo(f"wrote {out}: build it with 'docker build -t {tag} {out}'", err=True)
    click.echo(str(out))


@main.command()
@_host
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def images(as_json: bool) -> None:
    """The images dsenv built: tag, spec hash, size, created."""
    found = api.images()
    if as_json:
        click.echo(json.dumps([{"id": i.id, "tags": list(i.tags), "spec_sha256": i.labels.get("io.dsenv.spec.sha256"),
                                "size": i.size, "created": i.created} for i in found], indent=2))
        return
    click.echo(f"{'IMAGE':<40} {'SPEC':<12} {'SIZE':>9}  CREATED")
    for i in found:
        for tag in i.tags or ("<untagged>",):
            click.echo(f"{tag:<40} {i.labels.get('io.dsenv.spec.sha256', '')[:12]:<12} {i.size / 1e6:>7.0f}MB  {i.created[:19]}")


@main.command()
@_host
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("-p", "--parameter", "parameters", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A parameter, as papermill's -p (types inferred).")
@click.option("-f", "--parameters-file", "files", multiple=True, help="A YAML file of parameters.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Executed notebook (default: NAME.out.ipynb).")
@click.option("--timeout", type=int, default=600, show_default=True, help="Seconds a cell may run.")
@click.option("--gpus", help="N, all, or GPU UUIDs.")
@click.option("--image", help="Run in this image (id or tag) instead of building the folder's environment.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of NumPy's global random state (recorded).")
@click.option("-v", "--verbose", is_flag=True, help="Show papermill's log.")
@click.option("--json", "as_json", is_flag=True, help="Print the provenance as JSON.")
def repro(notebook: Path, parameters, files, output, timeout, gpus, image, seed, verbose, as_json) -> None:
    """Run NOTEBOOK with papermill inside its environment's image; write the executed notebook with provenance."""
    from . import repro as runs

    result = runs.repro(notebook, parameters=list(parameters), files=list(files), output=output, timeout=timeout,
                        gpus=gpus, image=image, seed=seed, on_event=_Progress(False, False),
                        on_output=(lambda chunk: click.echo(chunk, nl=False, err=True)) if verbose else None)
    if as_json:
        click.echo(json.dumps({"output": str(result.output), "provenance": result.provenance}, indent=2))
    else:
        click.echo(f"ran {notebook} in {result.provenance['image_id'][:19]} in {result.seconds:.1f} s", err=True)
        click.echo(str(result.output))


@main.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("--against", type=click.Path(path_type=Path), help="The recorded output to compare with.")
@click.option("--rtol", type=float, default=0.0, show_default=True, help="Relative tolerance for numbers in text.")
@click.option("--timeout", type=int, default=600, show_default=True, help="Seconds a cell may run.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(notebook: Path, against: Path | None, rtol: float, timeout: int, as_json: bool) -> None:
    """Re-run NOTEBOOK in its recorded image and compare outputs cell by cell; exit 0 only if equal."""
    from . import repro as runs

    report = runs.verify(notebook, against=against, rtol=rtol, timeout=timeout)
    diffs = report.comparison.differences if report.comparison else []
    if as_json:
        click.echo(json.dumps({"status": report.status, "reference": str(report.reference), "detail": report.detail,
                               "seconds": round(report.seconds, 2),
                               "differences": [d.__dict__ for d in diffs],
                               "notes": report.comparison.notes if report.comparison else []}, indent=2))
    else:
        click.echo(f"{report.status}: {notebook} against {report.reference} ({report.seconds:.1f} s)")
        for d in diffs:
            click.echo(f"  cell {d.cell} ({d.kind}): {d.detail}")
        if report.detail:
            click.echo(f"  {report.detail}")
    if report.status != "equal":
        sys.exit(10 if report.status == "differs" else 11)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def gpus(as_json: bool) -> None:
    """This host's GPUs: memory, utilisation, temperature, driver and CUDA version, MIG, and who holds each."""
    from . import containers, gpu

    host = gpu.discover()
    holders, ids = containers.dsenv_gpu_holders()
    held = gpu.holders_of(host.devices, holders, ids)
    if as_json:
        data = host.to_json()
        for d in data["devices"]:
            d["held_by"] = held.get(d["uuid"], [])
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"driver {host.driver}, CUDA driver {host.cuda_driver}")
    for d in host.devices:
        util = f"{d.utilization}%" if d.utilization is not None else "-"
        temp = f"{d.temperature}C" if d.temperature is not None else "-"
        mig = " MIG" if d.mig_mode else ""
        who = ", ".join(held.get(d.uuid, [])) or "free"
        click.echo(f"{d.index}  {d.uuid}  {d.name}{mig}  {d.memory_used / 2**30:.1f}/{d.memory_total / 2**30:.1f} GiB"
                   f"  util {util}  {temp}  {who}")


@main.group()
def base() -> None:
    """Base images."""


@base.command("bootstrap")
@click.option("--python", default="3.11", show_default=True, help="Python version (3.11: bookworm, 3.13: trixie).")
@click.option("--force", is_flag=True, help="Make it again even if it exists.")
def base_bootstrap(python: str, force: bool) -> None:
    """Make a Python base image from Debian packages (debootstrap + docker import), for machines with no registry."""
    tag = api.bootstrap_base(python, force=force, log=lambda s: click.echo(s, err=True))
    click.echo(tag)


from .cli_sweep import sweep  # noqa: E402

main.add_command(sweep)
for _command in CONTAINER_COMMANDS:
    main.add_command(_command)
main.add_command(__import__("dsenv.cli_remote", fromlist=["hosts"]).hosts)
main.add_command(__import__("dsenv.cli_remote", fromlist=["tunnels"]).tunnels)

if __name__ == "__main__":  # pragma: no cover
    main()
