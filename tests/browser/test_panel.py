"""The dsenv side panel in a real JupyterLab in Debian's Chromium: open a notebook, open the panel, see the
inferred requirements, Build until up to date, Run and open the container's link, Stop it, Add a package."""
from __future__ import annotations

import json
import re
import urllib.request

from .conftest import save_artifact

PANEL = "#dsenv-panel"


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status


def test_panel_build_run_stop(lab, page, artifacts):
    page.goto(f"{lab.url}/lab/tree/{lab.notebook}?token={lab.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)

    # the dsenv icon is in the right side bar; opening it shows the active notebook's environment
    tab = page.locator(".jp-SideBar.jp-mod-right .lm-TabBar-tab[data-id='dsenv-panel']")
    tab.wait_for(timeout=30_000)
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    panel = page.locator(PANEL)
    panel.wait_for(state="visible", timeout=10_000)
    page.wait_for_selector(f"{PANEL} .jp-dsenv-notebook:has-text('{lab.notebook}')", timeout=10_000)
    numpy = panel.locator("tr[data-requirement='numpy']")
    numpy.wait_for(timeout=60_000)
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


def test_panel_in_dark_theme(lab, page, artifacts):
    """The same panel in JupyterLab Dark: its colours come from the theme's --jp-* variables."""
    page.goto(f"{lab.url}/lab/tree/{lab.notebook}?token={lab.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^JupyterLab Dark$")).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    tab = page.locator(".jp-SideBar.jp-mod-right .lm-TabBar-tab[data-id='dsenv-panel']")
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    panel = page.locator(PANEL)
    panel.locator("tr[data-requirement='numpy']").wait_for(timeout=60_000)
    background = panel.evaluate("e => getComputedStyle(e).backgroundColor")
    dark = [int(v) for v in re.findall(r"\d+", background)[:3]]
    assert sum(dark) < 3 * 128, background
    shot = artifacts / "dsenv-panel-dark.png"
    panel.screenshot(path=str(shot))
    save_artifact(shot)
