"""``python -m services.cli.supervised MODULE [ARG...]``: run MODULE as ``__main__`` in a child of
``posefleet up`` that cannot outlive its supervisor.

PR_SET_PDEATHSIG (set by the supervisor) asks the child to stop with a SIGTERM when the
supervisor dies; nothing then enforces a deadline, since the one that would SIGKILL a child
still draining after the grace period is the process that died, and a grandchild gets no signal
at all. This bootstrap adds the deadline inside the child: a thread blocks on the supervisor's
lifeline pipe, and when it reads EOF (every write end is gone: the supervisor died, however it
died) it waits the grace period and then SIGKILLs the child's whole process group — the child,
and everything it spawned. While the supervisor lives the thread only sleeps in ``read``.
"""

from __future__ import annotations

import logging
import os
import runpy
import signal
import sys
import threading

log = logging.getLogger("posefleet.supervised")
# Set by the supervisor: the lifeline's read end, and the grace period in seconds.
LIFELINE_FD_ENV = "POSEFLEET_LIFELINE_FD"
LIFELINE_GRACE_ENV = "POSEFLEET_LIFELINE_GRACE_S"


def supervised(module: str, *args: str) -> list[str]:
    """The command line that runs ``python -m MODULE ARGS`` as a supervised child."""
    return [sys.executable, "-m", "services.cli.supervised", module, *args]


def watch_lifeline(fd: int, grace_s: float) -> threading.Thread:
    """Start the daemon thread that ends this process group ``grace_s`` after EOF on ``fd``."""

    def watch() -> None:
        while os.read(fd, 1):  # nothing is ever written; only EOF ends the loop
            pass
        log.warning("supervisor gone; stopping", extra={"grace_s": grace_s})
        threading.Event().wait(grace_s)  # the drain PDEATHSIG's SIGTERM started may finish
        log.error("still running after the grace period; killing the process group")
        os.killpg(0, signal.SIGKILL)  # our group: this child leads it (start_new_session)

    thread = threading.Thread(target=watch, name="lifeline", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m services.cli.supervised MODULE [ARG...]")
    # Popped: a grandchild started by MODULE is not a supervised child of its own.
    fd, grace = os.environ.pop(LIFELINE_FD_ENV, None), os.environ.pop(LIFELINE_GRACE_ENV, None)
    if fd is not None and grace is not None:  # run by hand, it is a plain `python -m MODULE`
        watch_lifeline(int(fd), float(grace))
    sys.argv = list(argv)
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
