"""The ipywidgets panel (`%dsenv panel`): the environment and where each requirement came from, Build with a
progress bar and a collapsible log, the containers (Run / Stop / Logs / Commit / Push) and the GPUs. Work runs in
background threads, so the kernel stays free while a build or a refresh is under way."""
from __future__ import annotations

import html
import threading
from collections.abc import Callable
from pathlib import Path

from .. import api, containers
from ..errors import DsenvError, UsageError


def _widgets():
    try:
        import ipywidgets
    except ImportError as e:
        raise UsageError("the dsenv panel needs ipywidgets", "pip install 'dsenv[notebook]'") from e
    return ipywidgets


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table in JupyterLab's colours (cells already escaped by the caller)."""
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px'>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (f"<table style='border-collapse:collapse;color:var(--jp-ui-font-color1)'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


class BuildProgress:
    """An on_event callback for api.build that moves a progress bar and appends to a log (any widgets with .value)."""

    def __init__(self, bar, status, log=None) -> None:
        self.bar, self.status, self.log = bar, status, log

    def __call__(self, event) -> None:
        if event.total:
            self.bar.max = max(event.total, 1)
            self.bar.value = min(event.step, event.total)
        if event.line:
            if event.line.startswith("Step "):
                self.status.value = f"step {event.step}/{event.total}: {html.escape(event.line.split(' : ', 1)[-1][:80])}"
            if self.log is not None:
                self.log.value = (self.log.value + event.line.rstrip("\n") + "\n")[-20000:]


def progress_callback(shell=None) -> Callable:
    """Build progress for a notebook: an ipywidgets bar where a widget front-end is attached (a kernel), plain text
    lines otherwise."""
    if shell is not None and getattr(shell, "kernel", None) is not None:
        try:
            w = _widgets()
        except DsenvError:
            w = None
        if w is not None:
            from IPython.display import display

            bar, status = w.IntProgress(value=0, min=0, max=1, description="build"), w.HTML()
            display(w.HBox([bar, status]))
            return BuildProgress(bar, status)
    return _text_progress


def _text_progress(event) -> None:
    if event.line.startswith("Step "):
        print(f"[{event.step}/{event.total}] {event.line.split(' : ', 1)[-1][:100]}", flush=True)


class DsenvPanel:
    """The widgets over one notebook folder's environment; `widget` is what gets displayed."""

    def __init__(self, path: str | Path, *, refresh_every: float | None = 5.0, host_gpus: Callable | None = None,
                 host: str | None = None) -> None:
        w = _widgets()
        self.path = Path(path)
        self.host = host  # a remote Docker host (name or ssh:// URL) every action acts on; None: the default
        self._gpus = host_gpus
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self.error = w.HTML()
        self.env = w.HTML("reading the environment...")
        self.state = w.HTML()
        self.build_button = w.Button(description="Build", icon="cogs", tooltip="build the environment's image")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="build", layout=w.Layout(width="50%"))
        self.build_status = w.HTML()
        self.log = w.Textarea(layout=w.Layout(width="100%", height="200px"), disabled=True)
        self.log_box = w.Accordion(children=[self.log], selected_index=None)
        self.log_box.set_title(0, "log")
        self.gpus_field = w.Text(placeholder="GPUs: N, all or UUIDs", layout=w.Layout(width="180px"))
        self.run_button = w.Button(description="Run", icon="play", tooltip="start JupyterLab in the environment")
        self.tag_field = w.Text(placeholder="repo:tag to commit as", layout=w.Layout(width="240px"))
        self.message_field = w.Text(placeholder="commit message", layout=w.Layout(width="240px"))
        self.push_button = w.Button(description="Push tag", icon="upload", tooltip="push repo:tag to its registry")
        self.containers_box = w.VBox()
        self.gpu_table = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.build_button.on_click(lambda _: self._start(self.build))
        self.run_button.on_click(lambda _: self._start(self.run))
        self.push_button.on_click(lambda _: self._start(self.push))
        self.refresh_button.on_click(lambda _: self._start(self.refresh))
        self.widget = w.VBox([
            w.HTML(f"<b>dsenv</b> {html.escape(str(self.path))}" + (f" on {html.escape(host)}" if host else "")),
            self.error,
            self.env, self.state, w.HBox([self.build_button, self.progress, self.build_status]), self.log_box,
            w.HTML("<b>Containers</b>"), w.HBox([self.run_button, self.gpus_field]), self.containers_box,
            w.HBox([self.tag_field, self.message_field, self.push_button]),
            w.HTML("<b>GPUs</b>"), self.gpu_table, self.refresh_button,
        ])
        self._start(self.refresh)
        if refresh_every:
            threading.Thread(target=self._poll, args=(refresh_every,), daemon=True, name="dsenv-panel").start()

    # -- background work ---------------------------------------------------------------------------------------
    def _start(self, action: Callable[[], None]) -> None:
        """Run an action in a worker thread (one at a time), showing a DsenvError as one line."""
        def work() -> None:
            with self._lock, api.on_host(self.host):
                try:
                    self.error.value = ""
                    action()
                except DsenvError as e:
                    self.error.value = f"<span style='color:var(--jp-error-color1)'>{html.escape(e.one_line())}</span>"
                except Exception as e:  # noqa: BLE001 - a panel must not die on an unexpected error
                    self.error.value = f"<span style='color:var(--jp-error-color1)'>{html.escape(repr(e))}</span>"

        self._worker = threading.Thread(target=work, daemon=True, name="dsenv-panel-action")
        self._worker.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the action under way (tests and scripts)."""
        if self._worker is not None:
            self._worker.join(timeout)

    def _poll(self, every: float) -> None:
        while not self._stop.wait(every):
            if self._lock.acquire(blocking=False):
                try:
                    with api.on_host(self.host):
                        self._refresh_runtime()
                except Exception:  # noqa: BLE001 - polling goes on; the next click shows the error
                    pass
                finally:
                    self._lock.release()

    def close(self) -> None:
        """Stop polling and close the widgets."""
        self._stop.set()
        self.widget.close()

    # -- actions -----------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the environment (plan) and the runtime state (containers, GPUs)."""
        p = api.plan(self.path)
        self.plan = p
        rows = [[html.escape(r.requirement), html.escape("; ".join(r.sources))] for r in p.spec.requirements]
        rows += [[f"apt: {html.escape(a.name)}", html.escape("; ".join(a.sources))] for a in p.spec.apt]
        self.env.value = (f"base <code>{html.escape(p.base)}</code>, Python {html.escape(p.spec.python)} "
                          f"({html.escape(p.spec.python_source)})" + _table(["requirement", "from"], rows))
        self._show_state(p.build.tag, p.image_exists)
        self._refresh_runtime()

    def _show_state(self, tag: str, up_to_date: bool) -> None:
        self.up_to_date = up_to_date
        self.tag = tag
        word = "up to date" if up_to_date else "to build"
        self.state.value = f"image <code>{html.escape(tag)}</code>: <b>{word}</b>"

    def _refresh_runtime(self) -> None:
        self._show_containers(containers.ps())
        self._show_gpus()

    def build(self) -> None:
        """Build the environment, moving the progress bar and filling the log."""
        self.progress.value, self.log.value = 0, ""
        self.build_status.value = "building..."
        self.build_button.disabled = True
        try:
            result = api.build(self.path, on_event=BuildProgress(self.progress, self.build_status, self.log))
        finally:
            self.build_button.disabled = False
        self.progress.value = self.progress.max
        self.build_status.value = f"{'built' if result.built else 'up to date'} in {result.seconds:.1f} s"
        self._show_state(result.tag, True)

    def run(self) -> None:
        """Start JupyterLab in the environment; the container appears in the table with its link."""
        self.build_status.value = "starting..."
        result = containers.run(self.path, containers.RunOptions(gpus=self.gpus_field.value.strip() or None))
        self.build_status.value = f"started {html.escape(result.name)}"
        self.last_run = result
        self._refresh_runtime()

    def push(self) -> None:
        """Push the tag in the tag field."""
        ref = self.tag_field.value.strip()
        if not ref:
            raise UsageError("no tag to push", "type repo:tag in the tag field (commit a container first)")
        result = containers.push(ref)
        self.build_status.value = f"pushed {html.escape(result.ref)} {html.escape(result.digest)}"

    def stop(self, name: str) -> None:
        """Stop one container."""
        containers.stop(name)
        self._refresh_runtime()

    def show_logs(self, name: str) -> None:
        """Put the container's last log lines into the log and open it."""
        self.log.value = "".join(containers.logs(name, tail=200))
        self.log_box.selected_index = 0

    def commit(self, name: str) -> None:
        """Commit one container as the tag in the tag field, with the message field."""
        ref = self.tag_field.value.strip()
        if not ref:
            raise UsageError("no tag to commit as", "type repo:tag in the tag field")
        result = containers.commit(name, ref, self.message_field.value)
        self.build_status.value = f"committed {html.escape(name)} as {html.escape(result.tag)}"

    # -- views -------------------------------------------------------------------------------------------------
    def _show_containers(self, found: list[containers.EnvContainer]) -> None:
        w = _widgets()
        folder = str(self.path.resolve() if self.path.is_dir() else self.path.resolve().parent)
        mine = [c for c in found if c.notebook == folder] + [c for c in found if c.notebook != folder]
        self.container_names = [c.name for c in mine]
        rows = []
        for c in mine:
            link = f"<a href='{html.escape(c.url)}' target='_blank'>JupyterLab</a>" if c.url else ""
            label = w.HTML(f"<code>{html.escape(c.name)}</code> {html.escape(c.status)} {html.escape(c.gpus)} {link}"
                           + ("" if c.notebook == folder else " (other environment)"))
            buttons = []
            for text, act in (("Stop", self.stop), ("Logs", self.show_logs), ("Commit", self.commit)):
                b = w.Button(description=text, layout=w.Layout(width="70px"))
                b.on_click(lambda _, act=act, name=c.name: self._start(lambda: act(name)))
                buttons.append(b)
            rows.append(w.HBox([label, *buttons]))
        self.containers_box.children = rows or [w.HTML("<i>no dsenv containers</i>")]

    def _show_gpus(self) -> None:
        from .. import gpu

        if self.host:  # a remote host's GPUs, as nvidia-smi there lists them
            from ..remote import hosts

            found = hosts.gpu_uuids(hosts.resolve(self.host))
            self.gpu_table.value = (_table(["GPU", "UUID"], [[html.escape(n), html.escape(u)] for u, n in found])
                                    if found else f"<i>no GPU on {html.escape(self.host)}</i>")
            return
        try:
            host = (self._gpus or gpu.discover)()
        except DsenvError:
            self.gpu_table.value = "<i>no GPU on this host</i>"
            return
        if not host.devices:
            self.gpu_table.value = "<i>no GPU on this host</i>"
            return
        holders, _ = containers.dsenv_gpu_holders()
        rows = [[str(d.index), html.escape(d.name), f"{d.memory_used / 2**30:.1f}/{d.memory_total / 2**30:.1f} GiB",
                 "" if d.utilization is None else f"{d.utilization}%",
                 html.escape(", ".join(holders.get(d.uuid, [])) or "free")] for d in host.devices]
        self.gpu_table.value = _table(["#", "GPU", "memory", "util", "held by"], rows)


def panel(path: str | Path, **kwargs) -> DsenvPanel:
    """A DsenvPanel over the notebook folder at path (display its .widget)."""
    return DsenvPanel(path, **kwargs)
