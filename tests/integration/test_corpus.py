"""Real notebooks written by others (scipy-2018-sklearn): inference finds exactly their packages; the image imports them."""
from __future__ import annotations

import json

from .conftest import dsenv


def test_plan_infers_the_corpus_packages_and_nothing_spurious(corpus):
    cli = dsenv("plan", str(corpus), "--json")
    assert cli.returncode == 0, cli.stderr
    plan = json.loads(cli.stdout)
    names = {r["requirement"] for r in plan["requirements"]}
    assert names == {"numpy", "scipy", "matplotlib", "pandas", "scikit-learn"}
    sources = {r["requirement"]: r["sources"] for r in plan["requirements"]}
    assert any("import sklearn" in s for s in sources["scikit-learn"])
    assert any("import mpl_toolkits" in s for s in sources["matplotlib"])
    assert "FROM " in plan["dockerfile"] and plan["tag"].startswith(f"dsenv/{corpus.name}:")


def test_build_check_imports_every_third_party_module(corpus):
    cli = dsenv("build", str(corpus), "--check")
    assert cli.returncode == 0, cli.stderr
    assert "check: every import of the notebooks works in the image: matplotlib, mpl_toolkits, numpy, pandas, scipy, sklearn" in cli.stderr
    tag = cli.stdout.strip()
    again = dsenv("build", str(corpus))
    assert again.returncode == 0 and again.stdout.strip() == tag and "up to date" in again.stderr
    assert (corpus / "dsenv.lock").read_text().count("--hash=sha256:") > 50
