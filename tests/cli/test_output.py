"""The CLI's shared output helpers: Ctrl-C in a refresh loop (services/cli/output.py)."""

import os
import signal

import pytest

from services.cli.output import stop_on_interrupt


def test_ctrl_c_stops_a_refresh_loop_between_requests_and_twice_interrupts():
    before = signal.getsignal(signal.SIGINT)
    with stop_on_interrupt() as stop:
        assert not stop.wait(0.01)
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt where the loop happens to be
        assert stop.wait(5)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the second one: stop now
            stop.wait(5)  # the handler runs here at the latest
    assert signal.getsignal(signal.SIGINT) is before
