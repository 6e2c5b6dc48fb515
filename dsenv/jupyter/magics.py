"""`%dsenv` line magics and `%%dsenv run` cells: thin wrappers over dsenv's public API."""
from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split

from .. import api, containers
from ..errors import DsenvError, UsageError

LINE_COMMANDS = ("plan", "build", "run", "ps", "stop", "logs", "commit", "push", "gpus", "repro", "panel")


def session_notebook() -> Path | None:
    """The notebook this kernel runs, from JPY_SESSION_NAME (set by Jupyter), if it names one that exists."""
    session = os.environ.get("JPY_SESSION_NAME")
    if session and Path(session).suffix == ".ipynb" and Path(session).exists():
        return Path(session)
    return None


def notebook_folder() -> Path:
    """The folder of the notebook this kernel runs, else the working folder."""
    found = session_notebook()
    return found.resolve().parent if found else Path.cwd()


@magics_class
class DsenvMagics(Magics):
    """%dsenv plan|build|run|ps|stop|logs|commit|push|gpus|repro|panel and %%dsenv run (the cell runs in the
    environment's kernel)."""

    def __init__(self, shell) -> None:
        super().__init__(shell)
        self.kernels: dict[tuple, object] = {}
        atexit.register(self.close)

    @magic_arguments()
    @argument("command", nargs="?", default="plan", help=", ".join(LINE_COMMANDS))
    @argument("args", nargs="*", help="a path (default: this notebook's folder), a container name (stop, logs, "
              "commit NAME TAG) or a tag (push TAG)")
    @argument("-m", "--message", default="", help="commit: the commit message")
    @argument("--env", help="the notebook or folder whose environment to use")
    @argument("--image", help="an image to run instead of building")
    @argument("--gpus", help="N, all, or GPU UUIDs")
    @argument("--host", help="a remote Docker host: a name from 'dsenv hosts' or ssh://USER@HOST[:PORT]")
    @line_cell_magic
    def dsenv(self, line: str, cell: str | None = None):
        """%dsenv COMMAND [ARGS]; %%dsenv run [--env PATH] [--image TAG] [--gpus G] runs the cell in the env."""
        try:
            # quotes group words, as in a shell: -m "added xgboost" is one message (IPython's own split keeps them)
            args = self.dsenv.parser.parse_args(arg_split(line, posix=True))
            if cell is not None and args.command != "run":
                raise UsageError(f"%%dsenv {args.command}: only 'run' takes a cell", "write %%dsenv run")
            with api.on_host(args.host):
                return self._line(args) if cell is None else self._run_cell(args, cell)
        except DsenvError as e:
            print(f"dsenv: {e.one_line()}", file=sys.stderr)
        except SystemExit:  # argparse's own message was printed
            pass
        return None

    def _path(self, args) -> Path:
        return Path(args.env or (args.args[0] if args.args else notebook_folder()))

    def _line(self, args):
        from IPython.display import HTML, display

        cmd = args.command
        if cmd not in LINE_COMMANDS:
            raise UsageError(f"%dsenv {cmd}: unknown command", f"use one of {', '.join(LINE_COMMANDS)}")
        if cmd == "plan":
            p = api.plan(self._path(args), show=True)
            print("\n".join(f"{r.requirement:<30} {'; '.join(r.sources[:2])}" for r in p.spec.requirements))
            print(f"image {p.build.tag} ({'up to date' if p.image_exists else 'to build'})")
            return p
        if cmd == "build":
            from .panel import progress_callback

            result = api.build(self._path(args), on_event=progress_callback(self.shell))
            print(f"{'built' if result.built else 'up to date:'} {result.tag}")
            return result.tag
        if cmd == "run":
            result = containers.run(self._path(args), containers.RunOptions(image=args.image, gpus=args.gpus))
            display(HTML(f'<a href="{result.url}" target="_blank">{result.name}: JupyterLab</a>'))
            return result.url
        if cmd == "ps":
            for c in containers.ps():
                print(f"{c.name:<30} {c.status:<8} {c.url or ''}")
            return None
        if cmd == "panel":
            from .panel import panel

            view = panel(self._path(args), host=args.host)
            display(view.widget)
            return view
        if cmd == "repro":
            from .. import repro

            notebook = Path(args.args[0]) if args.args else _this_notebook()
            done = repro.repro(notebook, gpus=args.gpus)
            print(f"{done.output} ({done.seconds:.1f} s, image {done.provenance.get('image_id', '')[:19]})")
            return done.output
        if cmd == "push":
            if not args.args:
                raise UsageError("%dsenv push needs a tag", "write %dsenv push repo:tag")
            pushed = containers.push(args.args[0])
            print(f"pushed {pushed.ref} {pushed.digest}")
            return pushed.digest
        if cmd == "gpus":
            from .. import gpu

            for d in gpu.discover().devices:
                print(f"{d.index} {d.uuid} {d.name} {d.memory_used / 2**30:.1f}/{d.memory_total / 2**30:.1f} GiB")
            return None
        if not args.args:
            raise UsageError(f"%dsenv {cmd} needs a container name", "see %dsenv ps")
        if cmd == "commit":
            if len(args.args) != 2:
                raise UsageError("%dsenv commit needs a container name and a tag", 'write %dsenv commit NAME repo:tag -m "..."')
            done = containers.commit(args.args[0], args.args[1], args.message)
            print(f"committed {args.args[0]} as {done.tag} ({done.id[:19]})")
            return done.tag
        if cmd == "stop":
            containers.stop(args.args[0])
        else:
            print("".join(containers.logs(args.args[0])), end="")
        return None

    def _run_cell(self, args, cell: str) -> None:
        from IPython.display import publish_display_data

        from ..remote_kernel import RemoteKernel

        key = (str(self._path(args).resolve()) if not args.image else None, args.image, args.gpus, args.host)
        kernel = self.kernels.get(key)
        if kernel is None:
            kernel = RemoteKernel.start(None if args.image else self._path(args), image=args.image, gpus=args.gpus,
                                        host=args.host)
            self.kernels[key] = kernel
        result = kernel.execute(
            cell,
            on_stream=lambda name, text: (sys.stderr if name == "stderr" else sys.stdout).write(text),
            on_display=lambda data, metadata: publish_display_data(data, metadata),
        )
        if result.status == "error":
            print("\n".join(result.traceback), file=sys.stderr)

    def close(self) -> None:
        """Stop every kernel container these magics started."""
        for kernel in self.kernels.values():
            try:
                kernel.stop()
            except Exception:
                pass
        self.kernels.clear()


def _this_notebook() -> Path:
    """The notebook this kernel runs (JPY_SESSION_NAME), for %dsenv repro without a path."""
    found = session_notebook()
    if found:
        return found
    raise UsageError("%dsenv repro: this kernel does not say which notebook it runs", "write %dsenv repro NOTEBOOK")


def load_ipython_extension(ip) -> None:
    """%load_ext dsenv"""
    ip.register_magics(DsenvMagics(ip))


def unload_ipython_extension(ip) -> None:
    """%unload_ext dsenv: the kernel containers of %%dsenv run cells are stopped."""
    magics = ip.magics_manager.registry.get("DsenvMagics")
    if magics is not None:
        magics.close()
