"""The dsenv side panel in a real JupyterLab in Debian's Chromium: open a notebook, open the panel, see the
inferred requirements, Build until up to date, Run and open the container's link, Stop it, Add a package."""
from __future__ import annotations

import json
import re
import urllib.request

from dsenv import containers

from .conftest import save_artifact

PANEL = "#dsenv-panel"


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status


def _open_notebook(lab, page) -> None:
    page.goto(f"{lab.url}/lab/tree/{lab.notebook}?token={lab.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)


def _show_panel(page):
    """Click the dsenv icon in the right side bar (unless its panel is shown) and wait for the requirements."""
    tab = page.locator(".jp-SideBar.jp-mod-right .lm-TabBar-tab[data-id='dsenv-panel']")
    tab.wait_for(timeout=30_000)
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    panel = page.locator(PANEL)
    panel.wait_for(state="visible", timeout=10_000)
    panel.locator("tr[data-requirement='numpy']").wait_for(timeout=60_000)
    return panel


def _open_panel(lab, page):
    _open_notebook(lab, page)
    return _show_panel(page)


def test_panel_build_run_stop(lab, page, artifacts):
    # the dsenv icon is in the right side bar; opening it shows the active notebook's environment
    panel = _open_panel(lab, page)
    page.wait_for_selector(f"{PANEL} .jp-dsenv-notebook:has-text('{lab.notebook}')", timeout=10_000)
    numpy = panel.locator("tr[data-requirement='numpy']")
    assert "import numpy (sine_fit.ipynb)" in numpy.inner_text()
    for name in ("pandas", "matplotlib"):
        assert panel.locator(f"tr[data-requirement='{name}']").count() == 1
    badge = panel.locator(".jp-dsenv-badge")
    assert badge.get_attribute("data-state") == "to-build"

    # Build: the progress bar moves, the status ends as built, the badge turns up to date
    panel.locator("button", has_text=re.compile(r"^Build$")).click()
    page.wait_for_selector(f"{PANEL} .jp-dsenv-badge[data-state='up-to-date']", timeout=300_000)
    assert re.search(r"(built|up to date) in [0-9.]+ s", panel.locator(".jp-dsenv-status").first.inner_text())
    assert panel.locator(".jp-dsenv-bar-fill").evaluate("e => e.style.width") == "100%"
    assert panel.locator(".jp-dsenv-error.jp-mod-visible").count() == 0

    # Run: the container is listed (this notebook's) with a JupyterLab link that answers with its token
    panel.locator("button", has_text=re.compile(r"^Run$")).click()
    started = panel.locator("section[data-section='run'] .jp-dsenv-status", has=page.locator("a.jp-dsenv-link"))
    started.wait_for(timeout=180_000)  # the run job ends once the container's Jupyter answers
    name = re.match(r"started (\S+):", started.inner_text()).group(1)
    assert name.startswith(f"dsenv-{lab.notebook.split('/')[0]}-")
    row = panel.locator(f".jp-dsenv-containers .jp-mod-mine[data-container='{name}']")
    row.locator("a.jp-dsenv-link").wait_for(timeout=10_000)
    link = row.locator("a.jp-dsenv-link").get_attribute("href")
    assert link == started.locator("a").get_attribute("href")
    assert link.startswith("http://127.0.0.1:") and "token=" in link
    assert _status(link) == 200
    assert row.locator(".jp-dsenv-state").inner_text() == "running"
    panel.locator(".jp-dsenv-gpus").wait_for()
    shot = artifacts / "dsenv-panel.png"
    panel.screenshot(path=str(shot))
    save_artifact(shot)
    page.screenshot(path=str(artifacts / "dsenv-lab.png"))
    save_artifact(artifacts / "dsenv-lab.png")

    # Stop it from its row
    mine = panel.locator(f".jp-dsenv-containers [data-container='{name}']")
    mine.locator("button", has_text="Stop").click()
    page.wait_for_function(
        """name => { const r = document.querySelector(`#dsenv-panel [data-container='${name}'] .jp-dsenv-state`);
                     return r && r.textContent !== 'running'; }""", arg=name, timeout=60_000)
    # a stopped container offers Remove instead of Stop; removing it takes it off the list
    mine.locator("button", has_text=re.compile(r"^Remove$")).click()
    mine.wait_for(state="detached", timeout=30_000)
    assert name not in {c.name for c in containers.ps()}

    # an invalid requirement: the one-line message and its hint, nothing written
    panel.locator(".jp-dsenv-add-field").fill("numpy >>> 2")
    panel.locator("button", has_text=re.compile(r"^Add$")).click()
    error = panel.locator(".jp-dsenv-error.jp-mod-visible")
    error.wait_for(timeout=10_000)
    assert "is not a requirement" in error.locator(".jp-dsenv-error-message").inner_text()
    assert error.locator(".jp-dsenv-error-hint").inner_text().startswith("hint: write NAME")

    # Add package: written into the open notebook's metadata.dsenv and saved through the contents API
    panel.locator(".jp-dsenv-add-field").fill("six")
    panel.locator("button", has_text=re.compile(r"^Add$")).click()
    added = panel.locator("tr[data-requirement='six']")
    added.wait_for(timeout=120_000)
    assert "metadata.dsenv (sine_fit.ipynb)" in added.inner_text()
    assert panel.locator(".jp-dsenv-error.jp-mod-visible").count() == 0
    saved = json.loads((lab.root / lab.notebook).read_text())
    assert saved["metadata"]["dsenv"]["requirements"] == ["six"]
    assert page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-dirty").count() == 0  # saved


def _gpu(index: int, used_gib: int, util: int, pids: tuple[int, ...] = ()) -> dict:
    return {"index": index, "uuid": f"GPU-{index:08x}-1111-2222-3333-444455556666", "name": "NVIDIA H100 80GB HBM3",
            "memory_total": 80 * 2**30, "memory_used": used_gib * 2**30, "utilization": util,
            "processes": [{"pid": pid, "used_memory": 2**30} for pid in pids]}


def test_gpu_table_follows_the_host_live(lab, page, artifacts):
    """'no GPU on this host', then the GPUs the server reads, refreshed every few seconds in place (the panel is not
    rebuilt: the same section element, the same height while the rows stay), and back to none."""
    panel = _open_panel(lab, page)
    gpus = panel.locator(".jp-dsenv-gpus")
    gpus.locator(".jp-dsenv-empty", has_text="no GPU on this host").wait_for(timeout=15_000)
    panel.evaluate("e => { window.__dsenvSection = e.querySelector('.jp-dsenv-gpus'); }")

    lab.set_gpus([_gpu(0, 1, 3), _gpu(1, 40, 97, pids=(4242,))])
    rows = gpus.locator("tr[data-gpu]")
    rows.nth(1).wait_for(timeout=15_000)
    assert rows.count() == 2
    first, second = (rows.nth(i).locator("td") for i in (0, 1))
    assert first.nth(1).inner_text() == "NVIDIA H100 80GB HBM3"
    assert "1.0/80.0 GiB" in first.nth(2).inner_text() and first.nth(3).inner_text() == "3%"
    assert first.nth(4).inner_text() == "free"
    assert "40.0/80.0 GiB" in second.nth(2).inner_text() and second.nth(3).inner_text() == "97%"
    assert second.nth(4).inner_text() == "host pid 4242"  # a process outside dsenv holds it
    assert "driver 580.95, CUDA 13.0" in gpus.inner_text()
    height = gpus.evaluate("e => e.getBoundingClientRect().height")

    lab.set_gpus([_gpu(0, 72, 100), _gpu(1, 2, 0)])  # the next poll shows the new readings, no reload
    page.wait_for_function(
        "() => { const c = document.querySelectorAll('#dsenv-panel tr[data-gpu] td');"
        "        return c.length === 10 && c[2].textContent.includes('72.0/80.0') && c[8].textContent === '0%'; }",
        timeout=15_000)
    assert gpus.evaluate("e => e.getBoundingClientRect().height") == height  # no layout jump
    assert panel.evaluate("e => window.__dsenvSection === e.querySelector('.jp-dsenv-gpus')")
    assert rows.nth(1).locator("td").nth(4).inner_text() == "free"
    fill = rows.nth(0).locator(".jp-dsenv-meter-fill").evaluate("e => e.style.width")
    assert fill == "90%"
    shot = artifacts / "dsenv-panel-gpus.png"
    gpus.screenshot(path=str(shot))
    save_artifact(shot)

    lab.set_gpus([])
    gpus.locator(".jp-dsenv-empty", has_text="no GPU on this host").wait_for(timeout=15_000)


def test_repro_runs_the_notebook_and_opens_the_output(lab, page, artifacts):
    """Repro: papermill in the notebook's image (built first when out of date), then the executed notebook opens
    in JupyterLab, with its outputs and dsenv's provenance."""
    panel = _open_panel(lab, page)
    panel.locator("button", has_text=re.compile(r"^Repro$")).click()
    status = panel.locator("section[data-section='repro'] .jp-dsenv-status")
    error = panel.locator(".jp-dsenv-error.jp-mod-visible")
    status.locator("a.jp-dsenv-link").or_(error).first.wait_for(timeout=600_000)  # an error ends the wait too
    assert error.count() == 0, error.inner_text()
    text = status.inner_text()
    out = lab.notebook.replace(".ipynb", ".out.ipynb")
    assert re.match(rf"done in [0-9.]+ s: {re.escape(out)}$", text), text
    # the output notebook is open in a tab of its own, its cells executed
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="sine_fit.out.ipynb")
    tab.wait_for(timeout=30_000)
    assert "lm-mod-current" in (tab.get_attribute("class") or "")
    opened = page.locator(".jp-NotebookPanel:visible")
    opened.locator(".jp-OutputArea-output").first.wait_for(timeout=30_000)
    assert opened.locator(".jp-InputPrompt", has_text=re.compile(r"\[\d+\]")).count() >= 2  # execution counts
    saved = json.loads((lab.root / out).read_text())
    provenance = saved["metadata"]["dsenv"]["provenance"]  # written by repro
    # the panel now follows the output notebook; its folder's environment still counts only the real notebook
    panel.locator(".jp-dsenv-notebook", has_text="sine_fit.out.ipynb").wait_for(timeout=10_000)
    numpy = panel.locator("tr[data-requirement='numpy']")
    numpy.wait_for(timeout=30_000)
    assert "sine_fit.out.ipynb" not in numpy.inner_text(), numpy.inner_text()
    assert provenance["image_tag"].startswith(f"dsenv/{lab.notebook.split('/')[0]}:") and provenance["exit_code"] == 0
    assert saved["metadata"]["papermill"]["exception"] in (None, False)
    page.screenshot(path=str(artifacts / "dsenv-repro.png"))
    save_artifact(artifacts / "dsenv-repro.png")


def test_panel_in_dark_theme(lab, page, artifacts):
    """The same panel in JupyterLab Dark: its colours come from the theme's --jp-* variables."""
    _open_notebook(lab, page)
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^JupyterLab Dark$")).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    panel = _show_panel(page)
    background = panel.evaluate("e => getComputedStyle(e).backgroundColor")
    dark = [int(v) for v in re.findall(r"\d+", background)[:3]]
    assert sum(dark) < 3 * 128, background
    shot = artifacts / "dsenv-panel-dark.png"
    panel.screenshot(path=str(shot))
    save_artifact(shot)
