"""Ctrl-C while a %%dsenv run cell waits: counted, never raised inside jupyter_client's event loop."""
from __future__ import annotations

import os
import signal
import threading

from dsenv.remote_kernel import _ctrl_c


def test_sigint_is_counted_not_raised_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with _ctrl_c() as pressed:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        assert pressed.count == 2
    assert signal.getsignal(signal.SIGINT) is before


def test_outside_the_main_thread_nothing_is_installed():
    seen = []

    def worker():
        with _ctrl_c() as pressed:
            seen.append((pressed.count, signal.getsignal(signal.SIGINT)))

    before = signal.getsignal(signal.SIGINT)
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [(0, before)]
