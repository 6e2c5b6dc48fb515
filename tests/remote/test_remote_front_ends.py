"""The notebook front-ends with --host: %dsenv ps and a %%dsenv run cell whose kernel container runs on the remote
(its ZMQ ports reached through SSH forwards), and the ipywidgets panel following the remote's image and containers."""
from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output


@pytest.fixture
def remote_env(remote_with_image, monkeypatch):
    """This process talks to the test remote the way the CLI subprocesses do (its ssh config and state folders)."""
    for key, value in remote_with_image.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    return remote_with_image


def _cell(sh, text: str):
    with capture_output() as out:
        sh.run_cell(text)
    return out


def test_magics_run_a_cell_in_a_kernel_on_the_remote(remote_env, example_image):
    remote = remote_env
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "dsenv")
    magics = sh.magics_manager.registry["DsenvMagics"]
    head = f"%%dsenv run --host {remote.url} --image {example_image}\n"
    try:
        first = _cell(sh, head + "import platform\nx = 21\nprint('on', platform.node() != '')")
        assert first.stdout == "on True\n", first.stderr
        assert _cell(sh, head + "print(x * 2)").stdout == "42\n"
        (kernel,) = [k for key, k in magics.kernels.items() if key[-1] == remote.url]
        assert kernel.name in remote.docker("ps", "--format", "{{.Names}}").split()
        assert kernel.name in _cell(sh, f"%dsenv ps --host {remote.url}").stdout
        assert kernel.name not in _cell(sh, "%dsenv ps").stdout  # the local daemon has no such container
    finally:
        magics.close()
    assert remote.docker("ps", "-aq").strip() == ""


def test_panel_on_a_remote_host(remote_env, folder):
    pytest.importorskip("ipywidgets")
    from dsenv.jupyter.panel import DsenvPanel

    remote = remote_env
    panel = DsenvPanel(folder, refresh_every=None, host=remote.url)
    try:
        panel.wait(120)
        assert panel.error.value == "", panel.error.value
        assert "up to date" in panel.state.value  # the image is on the remote, not built again
        assert f"no GPU on {remote.url}" in panel.gpu_table.value
    finally:
        panel.close()
