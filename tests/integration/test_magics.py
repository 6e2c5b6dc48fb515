"""The %dsenv magics in a real IPython shell against the real daemon: %%dsenv run cells in the env's kernel."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from dsenv import containers


@pytest.fixture(scope="module")
def shell():
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "dsenv")
    yield sh
    magics = sh.magics_manager.registry["DsenvMagics"]
    magics.close()


def cell(sh, text: str):
    with capture_output() as out:
        sh.run_cell(text)
    return out


def test_build_and_plan_line_magics(shell, example):
    folder, built = example
    out = cell(shell, f"%dsenv build {folder}")
    assert f"up to date: {built.tag}" in out.stdout
    out = cell(shell, f"%dsenv plan {folder}")
    assert "numpy" in out.stdout and built.tag in out.stdout


def test_run_ps_logs_stop_line_magics(shell, example, cleanup_containers):
    folder, _ = example
    with capture_output() as out:
        url = shell.run_line_magic("dsenv", f"run {folder}")
    (link,) = out.outputs
    assert url.startswith("http://127.0.0.1:") and f'href="{url}"' in link.data["text/html"]
    name = next(c.name for c in containers.ps() if c.url == url)
    cleanup_containers.append(name)
    assert name in cell(shell, "%dsenv ps").stdout
    assert "Jupyter" in cell(shell, f"%dsenv logs {name}").stdout
    cell(shell, f"%dsenv stop {name}")
    assert name not in {c.name for c in containers.ps() if c.status == "running"}


def test_cells_run_in_one_remote_kernel_with_streams_rich_outputs_and_errors(shell, example):
    folder, _ = example
    env = f"%%dsenv run --env {folder}\n"
    first = cell(shell, env + "x = 21\nimport os\nprint('inside', os.environ['HOME'])")
    assert first.stdout == "inside /home/dsenv\n", first.stderr
    second = cell(shell, env + "x * 2")
    assert [o.data for o in second.outputs] == [{"text/plain": "42"}]
    png = cell(shell, env + "import io, matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
                            "from IPython.display import Image, display\nfig = plt.figure(); plt.plot([1, 2])\n"
                            "buf = io.BytesIO(); fig.savefig(buf, format='png'); display(Image(buf.getvalue()))")
    (rich,) = png.outputs
    assert "image/png" in rich.data and len(rich.data["image/png"]) > 100
    failing = cell(shell, env + "1 / 0")
    assert "ZeroDivisionError" in failing.stderr and "Traceback" in failing.stderr
    local = cell(shell, "z = 5\nprint(z)")
    assert local.stdout == "5\n"
    names = [k.name for k in shell.magics_manager.registry["DsenvMagics"].kernels.values()]
    assert len(names) == 1 and names[0] in {c.name for c in containers.ps() if c.status == "running"}


def test_interrupting_a_cell_interrupts_the_remote_code_and_keeps_its_state(shell, example):
    folder, _ = example
    env = f"%%dsenv run --env {folder}\n"
    cell(shell, env + "kept = 'still here'")
    timer = threading.Timer(3, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        out = cell(shell, env + "import time\nfor i in range(120):\n    time.sleep(0.5)")
    finally:
        timer.cancel()
    assert time.monotonic() - started < 20
    assert "KeyboardInterrupt" in out.stderr
    assert cell(shell, env + "print(kept)").stdout == "still here\n"


def test_panel_commit_and_push_magics(shell, example):
    folder, _ = example
    with capture_output():
        view = shell.run_line_magic("dsenv", f"panel {folder}")
    view.wait(60)
    assert "numpy" in view.env.value and "up to date" in view.state.value
    view.close()
    assert "needs a tag" in cell(shell, "%dsenv push").stderr
    assert "needs a container name and a tag" in cell(shell, "%dsenv commit only-a-name").stderr
    assert "no container named no-such-container" in cell(shell, "%dsenv commit no-such-container repo:tag -m msg").stderr


def test_gpus_commit_push_and_repro_magics(shell, example, registry, tmp_path, monkeypatch, cleanup_containers):
    import json
    import shutil

    from dsenv import engine

    folder, built = example
    uuid = "GPU-12345678-1234-1234-1234-123456789abc"
    devices = tmp_path / "gpus.json"
    devices.write_text(json.dumps({"driver": "580.159.04", "cuda_driver": "13.0", "devices": [
        {"index": 0, "uuid": uuid, "name": "NVIDIA H100 80GB HBM3", "memory_total": 85899345920,
         "memory_used": 2147483648, "utilization": 3, "mig_mode": False}]}))
    monkeypatch.setenv("DSENV_GPU_DEVICES", str(devices))
    assert cell(shell, "%dsenv gpus").stdout == f"0 {uuid} NVIDIA H100 80GB HBM3 2.0/80.0 GiB\n"
    monkeypatch.delenv("DSENV_GPU_DEVICES")

    with capture_output():
        url = shell.run_line_magic("dsenv", f"run {folder}")
    name = next(c.name for c in containers.ps() if c.url == url)
    cleanup_containers.append(name)
    ref = f"{registry}/dsenv-magic-{folder.name}:v1"
    try:
        out = cell(shell, f'%dsenv commit {name} {ref} -m "from a magic"')
        assert out.stdout.startswith(f"committed {name} as {ref} (sha256:"), out.stderr
        assert engine.image_info(ref).labels["io.dsenv.commit.message"] == "from a magic"
        out = cell(shell, f"%dsenv push {ref}")
        assert out.stdout.startswith(f"pushed {ref} sha256:"), out.stderr
    finally:
        engine.remove_image(ref)
    cell(shell, f"%dsenv stop {name}")

    copy = tmp_path / "nb" / folder.name  # same folder name, same environment: nothing to build
    shutil.copytree(folder, copy)
    out = cell(shell, f"%dsenv repro {copy / 'sine_fit.ipynb'}")
    written = copy / "sine_fit.out.ipynb"
    assert out.stdout.startswith(f"{written} ("), out.stderr
    provenance = json.loads(written.read_text())["metadata"]["dsenv"]["provenance"]
    assert provenance["image_id"] == built.image_id and provenance["exit_code"] == 0


def test_errors_are_one_short_line(shell):
    out = cell(shell, "%dsenv plan /nonexistent-dsenv-folder")
    assert out.stderr.startswith("dsenv: /nonexistent-dsenv-folder: no such file or folder (hint:")
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    out = cell(shell, "%dsenv frobnicate")
    assert "unknown command" in out.stderr


def test_closing_stops_the_kernel_containers(shell, example):
    magics = shell.magics_manager.registry["DsenvMagics"]
    names = [k.name for k in magics.kernels.values()]
    magics.close()
    running = {c.name for c in containers.ps()}
    assert not set(names) & running


def _kernel_containers() -> set[str]:
    return {c.name for c in containers.ps() if c.status in ("created", "running")}


@pytest.mark.parametrize("ending", ["shutdown", "killed"])
def test_a_notebook_kernel_that_ends_takes_its_kernel_container_along(example, ending):
    from jupyter_client import KernelManager

    folder, _ = example
    before = _kernel_containers()
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        out: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        client.execute_interactive("%load_ext dsenv", timeout=60)
        shown: list[dict] = []
        client.execute_interactive(f"%dsenv build {folder}", timeout=180,
                                   output_hook=lambda m: shown.append(m["content"].get("data", {})))
        assert any("application/vnd.jupyter.widget-view+json" in d for d in shown)  # a progress bar, in a kernel
        client.execute_interactive(f"%%dsenv run --env {folder}\nprint(6 * 7)", timeout=180, output_hook=hook)
        assert "".join(out) == "42\n"
        (started,) = _kernel_containers() - before
    finally:
        client.stop_channels()
        if ending == "killed":  # SIGKILL: no atexit, no shutdown hook runs in the notebook's kernel
            os.kill(km.provisioner.process.pid, signal.SIGKILL)
            km.provisioner.process.wait(timeout=30)
        km.shutdown_kernel(now=ending == "killed")
    deadline = time.monotonic() + 30
    while started in {c.name for c in containers.ps()} and time.monotonic() < deadline:  # stopped, then removed
        time.sleep(0.5)
    assert started not in {c.name for c in containers.ps()}
