"""Bootstrapping a Python base image from Debian packages, for machines that reach no container registry."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import engine
from .config import BOOTSTRAP_BASE
from .errors import BootstrapError

SUITES = {"3.11": "bookworm", "3.13": "trixie"}
MIRROR = "http://deb.debian.org/debian"


def recipe_dir() -> Path:
    """Dockerfiles/ inside the installed wheel, or at the top of a source checkout."""
    packaged = Path(__file__).parent / "Dockerfiles"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "Dockerfiles"


def bootstrap_tag(python: str) -> str:
    """The tag of the bootstrapped base for a Python version (the Debian suite that ships it)."""
    if python not in SUITES:
        raise BootstrapError(f"no Debian release ships Python {python} as its python3",
                             f"bootstrap one of {', '.join(SUITES)}, or use a registry base image for {python}")
    return BOOTSTRAP_BASE.format(python=python, suite=SUITES[python])


def bootstrap(python: str = "3.11", mirror: str = MIRROR, force: bool = False,
              log: Callable[[str], None] = lambda s: None) -> str:
    """debootstrap a minimal Debian, import it, and build the Python layer from Dockerfiles/; returns the tag."""
    tag = bootstrap_tag(python)
    suite = SUITES[python]
    if not force and engine.image_info(tag):
        log(f"{tag} is already here")
        return tag
    debian = f"dsenv/debian:{suite}"
    if force or not engine.image_info(debian):
        if not shutil.which("debootstrap"):
            raise BootstrapError("debootstrap is not installed", "apt-get install -y debootstrap")
        if os.geteuid() != 0:
            raise BootstrapError("debootstrap needs root", "run 'sudo dsenv base bootstrap'")
        with tempfile.TemporaryDirectory(prefix="dsenv-rootfs-") as root:
            log(f"debootstrap {suite} from {mirror} ...")
            proc = subprocess.run(["debootstrap", "--variant=minbase", suite, root, mirror],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
                raise BootstrapError(f"debootstrap {suite} failed: {' | '.join(last)}",
                                     f"check that {mirror} is reachable")
            log(f"importing the root filesystem as {debian} ...")
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            try:
                engine.import_rootfs(tar.stdout, "dsenv/debian", suite)
            finally:
                tar.stdout.close()
                tar.wait()
    log(f"building {tag} ...")
    recipe = (recipe_dir() / "python-debian.Dockerfile").read_text()
    context = engine.make_context({}, recipe)
    engine.build(context, tag, buildargs={"DEBIAN_IMAGE": debian}, labels={"io.dsenv.base": "bootstrap"},
                 on_event=lambda e: e.line and log(e.line))
    return tag
