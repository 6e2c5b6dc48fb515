"""The ipywidgets panel driven programmatically against the real daemon: Build, Run, Logs, Commit, Stop, GPUs."""
from __future__ import annotations

import json
import urllib.request

import pytest

from dsenv import containers, engine
from dsenv.jupyter.panel import DsenvPanel, progress_callback

from .conftest import REPO, SESSION, new_env

pytest.importorskip("ipywidgets")


def _buttons(panel: DsenvPanel, name: str) -> dict:
    row = panel.containers_box.children[panel.container_names.index(name)]
    return {b.description: b for b in row.children[1:]}


def test_panel_builds_runs_commits_and_stops(workdir, made_names, example, cleanup_containers):
    folder = new_env(workdir, made_names, REPO / "notebooks", "panel")
    panel = DsenvPanel(folder, refresh_every=None)
    try:
        panel.wait(120)
        assert panel.error.value == ""
        assert "numpy" in panel.env.value and "sine_fit.ipynb" in panel.env.value
        assert "to build" in panel.state.value and not panel.up_to_date

        panel.build_button.click()
        panel.wait(600)
        assert panel.error.value == "", panel.error.value
        assert panel.up_to_date and "up to date" in panel.state.value
        assert panel.progress.value == panel.progress.max > 1
        assert "Step" in panel.log.value or "#" in panel.log.value
        assert engine.image_info(panel.tag) is not None

        panel.run_button.click()
        panel.wait(120)
        assert panel.error.value == "", panel.error.value
        name = panel.last_run.name
        cleanup_containers.append(name)
        assert panel.container_names[0] == name
        row_html = panel.containers_box.children[0].children[0].value
        assert "running" in row_html and panel.last_run.url in row_html.replace("&amp;", "&")
        with urllib.request.urlopen(panel.last_run.url.replace("/lab?", "/api/status?"), timeout=10) as r:
            assert r.status == 200 and "started" in json.loads(r.read())

        _buttons(panel, name)["Logs"].click()
        panel.wait(30)
        assert "Jupyter" in panel.log.value and panel.log_box.selected_index == 0

        ref = f"dsenv-panel-{SESSION}:v1"
        panel.tag_field.value, panel.message_field.value = ref, "from the panel"
        _buttons(panel, name)["Commit"].click()
        panel.wait(120)
        try:
            assert panel.error.value == "", panel.error.value
            assert engine.image_info(ref).labels["io.dsenv.commit.message"] == "from the panel"
        finally:
            engine.remove_image(ref)

        _buttons(panel, name)["Stop"].click()
        panel.wait(60)
        assert name not in {c.name for c in containers.ps() if c.status == "running"}
        assert "no GPU on this host" in panel.gpu_table.value
    finally:
        panel.close()


def test_panel_shows_errors_as_one_line_and_keeps_working(tmp_path):
    (tmp_path / "broken.ipynb").write_text("{not json")
    panel = DsenvPanel(tmp_path, refresh_every=None)
    panel.wait(60)
    assert "broken.ipynb" in panel.error.value and "Traceback" not in panel.error.value
    panel.push_button.click()
    panel.wait(10)
    assert "no tag to push" in panel.error.value
    panel.close()


def test_panel_gpu_table_lists_injected_devices(tmp_path, example):
    from dsenv import gpu

    host = gpu.HostGpus("580.1", "13.0", [gpu.Gpu(0, "GPU-aaaa", "NVIDIA H100", 80 * 2**30, 2**30, 7)])
    panel = DsenvPanel(example[0], refresh_every=None, host_gpus=lambda: host)
    panel.wait(60)
    assert "NVIDIA H100" in panel.gpu_table.value and "1.0/80.0 GiB" in panel.gpu_table.value
    assert "7%" in panel.gpu_table.value and "free" in panel.gpu_table.value
    panel.close()


def test_progress_is_text_without_a_widget_front_end(capsys):
    from dsenv.engine import BuildEvent

    report = progress_callback(shell=None)
    report(BuildEvent(step=2, total=9, line="Step 2/9 : RUN uv pip install"))
    assert capsys.readouterr().out == "[2/9] RUN uv pip install\n"


def test_panel_reads_and_refreshes_in_the_background(example, cleanup_containers):
    import time

    folder, built = example
    started = time.monotonic()
    panel = DsenvPanel(folder, refresh_every=0.3)
    try:
        assert time.monotonic() - started < 1.0  # the plan is read in a worker thread: the kernel is free at once
        panel.wait(60)
        assert "up to date" in panel.state.value
        run = containers.run(None, containers.RunOptions(image=built.tag, command=["sleep", "60"], detach=True))
        cleanup_containers.append(run.name)
        deadline = time.monotonic() + 10
        while run.name not in panel.container_names and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run.name in panel.container_names  # found by the polling thread, no click
    finally:
        panel.close()
