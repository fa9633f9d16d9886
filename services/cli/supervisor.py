"""Run several processes as one system, for ``posefleet up``: a small kubelet.

Children start in their own sessions, so a terminal's Ctrl-C reaches only the supervisor, which
then stops them in order: SIGTERM to each (workers drain their batch), a grace period, SIGKILL
for stragglers. A child that exits while the system runs is restarted with exponential backoff
(``RestartPolicy``, the kubelet's CrashLoopBackOff), after whatever it left in its process group
is killed; the rest of the system keeps serving.

Children die with the supervisor, however it dies. Each gets PR_SET_PDEATHSIG (SIGTERM, so it
drains) from the thread that runs the supervisor — the kernel ties that signal to the forking
*thread*, so every start and restart happens in the thread that calls ``run_until_stopped``.
PDEATHSIG alone is a request: a child whose drain never ends (a control worker waiting on a
batch whose workers are gone) or a grandchild (which never gets the signal) would outlive a
SIGKILLed supervisor. So each child also holds the read end of a *lifeline* pipe whose only
write end the supervisor keeps: children started through ``services.cli.supervised`` see EOF
when the supervisor is gone and kill their whole process group once the grace period is over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO

import httpx
from rich.console import Console
from rich.markup import escape

from services.cli.redis_server import die_with_parent_preexec
from services.cli.supervised import LIFELINE_FD_ENV, LIFELINE_GRACE_ENV
from services.core.logs import JsonFormatter

_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")
_LEVEL_STYLES = {"warning": "yellow", "error": "red", "critical": "bold red"}
# SIGHUP too: closing the terminal should stop the system as cleanly as Ctrl-C does.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_TAIL_LINES = 20
_NAME = "supervisor"  # how the supervisor's own lines are prefixed


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None  # merged over os.environ
    ready_url: str | None = None  # answers 200 once the process can serve


@dataclass(frozen=True)
class RestartPolicy:
    """The kubelet's CrashLoopBackOff, with a laptop's numbers: restart number n of a crashing
    child waits ``initial_s * 2**(n-1)``, at most ``max_s``; a child that ran ``stable_s``
    before it exited counts as healthy again and waits ``initial_s`` (the kubelet: 10 s doubling
    to 5 min, reset after 10 min — too slow to see a fix work on one machine)."""

    initial_s: float = 1.0
    max_s: float = 30.0
    stable_s: float = 60.0

    def delay(self, crashes: int) -> float:
        """The wait before restarting a child after its ``crashes``-th exit in a row."""
        return min(self.max_s, self.initial_s * 2 ** (crashes - 1))


@dataclass
class _Child:
    spec: ProcessSpec
    colour: str
    proc: subprocess.Popen[bytes]
    pump: threading.Thread
    started: float  # time.monotonic() of the latest start
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    restarts: int = 0  # in all, like a pod's restart count
    crashes: int = 0  # exits in a row, each within stable_s of its start: drives the backoff


def compact(line: str) -> str:
    """A JSON log line as ``level msg key=value …`` (rich markup); anything else unchanged."""
    try:
        entry = json.loads(line)
    except ValueError:
        return escape(line)
    if not isinstance(entry, dict) or "msg" not in entry:
        return escape(line)
    extra = " ".join(
        f"{k}={v}"
        for k, v in entry.items()
        if k not in ("ts", "level", "service", "logger", "msg", "exc")
    )
    level = str(entry.get("level", ""))
    text = escape(f"{level:<7} {entry['msg']} {extra}".rstrip())
    if "exc" in entry:
        text += "\n" + escape(str(entry["exc"]))
    style = _LEVEL_STYLES.get(level)
    return f"[{style}]{text}[/]" if style else text


def describe_exit(code: int) -> str:
    """``-15 (SIGTERM)`` rather than a bare negative number nobody remembers."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} ({signal.Signals(-code).name})"
    return str(code)


class Supervisor:
    """Owns the children it starts. ``start``, ``wait_ready`` and ``run_until_stopped`` must run
    in the main thread: the only one Python delivers signals to, and the thread the children's
    PR_SET_PDEATHSIG is tied to."""

    def __init__(
        self,
        console: Console | None = None,
        grace_s: float = 20.0,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.console = console or Console()
        self.grace_s = grace_s
        self.policy = policy or RestartPolicy()
        self._children: dict[str, _Child] = {}
        self._width = 0  # the longest child name; the supervisor's own lines may stick out
        self._tail_lock = threading.Lock()
        self._formatter = JsonFormatter(_NAME)
        # SimpleQueue: its put() is reentrant, so a signal handler may call it while the main
        # thread is inside get() (queue.Queue could deadlock on its own lock there).
        self._exited: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        # Nothing is ever written: the write end closes when this process ends, however it ends.
        # os.pipe() fds are not inheritable, so no child holds a write end that keeps it open.
        self._lifeline_read, self._lifeline_write = os.pipe()

    def start(self, spec: ProcessSpec) -> None:
        if spec.name in self._children:
            raise ValueError(f"a process named {spec.name!r} was already started")
        self._width = max(self._width, len(spec.name))
        colour = _COLOURS[len(self._children) % len(_COLOURS)]
        self._children[spec.name] = self._launch(spec, colour)

    def _launch(self, spec: ProcessSpec, colour: str) -> _Child:
        lifeline = {
            LIFELINE_FD_ENV: str(self._lifeline_read),
            LIFELINE_GRACE_ENV: f"{self.grace_s:g}",
        }
        proc = subprocess.Popen(
            spec.argv,
            env={**os.environ, **(spec.env or {}), **lifeline},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(self._lifeline_read,),
            preexec_fn=die_with_parent_preexec(),
        )
        child = _Child(spec, colour, proc, threading.Thread(), time.monotonic())
        previous = self._children.get(spec.name)
        if previous is not None:  # a restart keeps the record's counters and recent lines
            child.tail, child.restarts, child.crashes = (
                previous.tail,
                previous.restarts,
                previous.crashes,
            )
        child.pump = threading.Thread(target=self._pump, args=(child,), daemon=True)
        child.pump.start()
        # Its own thread waits for the exit: end of output is no proof, since a grandchild may
        # hold the pipe open after the child died.
        threading.Thread(target=self._wait, args=(spec.name, proc), daemon=True).start()
        return child

    def _pump(self, child: _Child) -> None:
        stream: IO[bytes] | None = child.proc.stdout
        assert stream is not None
        with stream:
            for raw in iter(stream.readline, b""):
                self._show(child.spec.name, child.colour, raw.decode(errors="replace").rstrip())

    def _show(self, name: str, colour: str, line: str) -> None:
        if name in self._children:
            with self._tail_lock:
                self._children[name].tail.append(line)
        self.console.print(
            f"[{colour}]{escape(name):<{self._width}}[/] │ {compact(line)}",
            highlight=False,
            soft_wrap=True,
        )

    def _event(self, level: int, msg: str, **fields: object) -> None:
        """One structured line of the supervisor's own, shown like a child's JSON log line."""
        record = logging.makeLogRecord(
            {
                "name": "posefleet.supervisor",
                "levelno": level,
                "levelname": logging.getLevelName(level),
                "msg": msg,
                **fields,
            }
        )
        self._show(_NAME, "bold", self._formatter.format(record))

    def _wait(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        # WNOWAIT leaves the child a zombie: its pid, and so its process group's id, cannot be
        # reused until the main thread has killed what the child left in that group. (Where
        # there is no waitid, as on macOS, the child is reaped here and that is not assured.)
        if hasattr(os, "waitid"):
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        else:
            proc.wait()
        self._exited.put(name)

    def _tail(self, name: str) -> str:
        child = self._children[name]
        if child.proc.poll() is not None:  # its last lines are the useful ones: read to EOF,
            child.pump.join(timeout=5.0)  # bounded, as a grandchild may hold the pipe open
        with self._tail_lock:
            return "\n".join(child.tail)

    def pids(self) -> dict[str, int]:
        return {name: child.proc.pid for name, child in self._children.items()}

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every ``ready_url`` answers 200; raise with the culprit's last lines if
        one does not in time or if any child exits meanwhile (a child that cannot start is a
        broken setup to report, not a crash to retry)."""
        deadline = time.monotonic() + timeout_s
        pending = [c.spec for c in self._children.values() if c.spec.ready_url is not None]
        # trust_env=False: an HTTP(S)_PROXY from the environment must not intercept 127.0.0.1.
        with httpx.Client(trust_env=False) as client:
            while True:
                for name, child in self._children.items():
                    if child.proc.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with {describe_exit(child.proc.returncode)} before "
                            f"the system was ready:\n{self._tail(name)}"
                        )
                for spec in list(pending):
                    assert spec.ready_url is not None
                    with contextlib.suppress(httpx.HTTPError):
                        timeout = max(0.1, min(1.0, deadline - time.monotonic()))
                        if client.get(spec.ready_url, timeout=timeout).status_code == 200:
                            pending.remove(spec)
                if not pending:
                    return
                if time.monotonic() > deadline:
                    spec = pending[0]
                    raise RuntimeError(
                        f"{spec.name} not ready at {spec.ready_url} after {timeout_s:g} s:\n"
                        + self._tail(spec.name)
                    )
                time.sleep(0.1)  # poll interval for the readiness probes

    def run_until_stopped(self) -> int:
        """Keep the system running until SIGINT/SIGTERM/SIGHUP: a child that exits meanwhile,
        whatever its status, is restarted after its backoff delay. Then every child is stopped
        and 0 returned."""

        def on_signal(_signum: int, _frame: object) -> None:
            self._exited.put(None)

        previous = {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS}
        due: dict[str, float] = {}  # child name -> time.monotonic() of its restart
        try:
            while True:
                wait = max(0.0, min(due.values()) - time.monotonic()) if due else None
                try:
                    name = self._exited.get(timeout=wait)
                except queue.Empty:
                    now = time.monotonic()
                    for ready in [n for n, at in due.items() if at <= now]:
                        del due[ready]
                        self._restart(ready)
                    continue
                if name is None:
                    return 0
                due[name] = time.monotonic() + self._reap(name)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop_all()

    def _reap(self, name: str) -> float:
        """Clear up after a child that exited; log why and when it comes back. Returns the
        backoff delay in seconds."""
        child = self._children[name]
        code = self._finish(name)  # what it spawned dies with it
        child.pump.join(timeout=1.0)  # its last lines first, then the supervisor's
        ran_s = time.monotonic() - child.started
        child.crashes = 1 if ran_s >= self.policy.stable_s else child.crashes + 1
        child.restarts += 1
        delay = self.policy.delay(child.crashes)
        self._event(
            logging.WARNING,
            "child exited; restarting",
            child=name,
            exit=describe_exit(code),
            ran_s=round(ran_s, 1),
            restarts=child.restarts,
            next_delay_s=delay,
        )
        return delay

    def _restart(self, name: str) -> None:
        child = self._launch(self._children[name].spec, self._children[name].colour)
        self._children[name] = child
        self._event(
            logging.INFO,
            "child restarted",
            child=name,
            pid=child.proc.pid,
            restarts=child.restarts,
        )

    def stop_all(self) -> None:
        """SIGTERM every child, SIGKILL what is left after ``grace_s``. Signals go to each
        child's process group, so whatever a child spawned is stopped with it. Idempotent."""
        pending = {n for n, c in self._children.items() if c.proc.returncode is None}
        for name in pending:
            _signal_group(self._children[name].proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while pending:
            try:
                name = self._exited.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if name in pending:  # not None (a second Ctrl-C), nor an exit already handled
                pending.discard(name)
                self.console.print(f"{name}: exited {describe_exit(self._finish(name))}")
        for name in pending:
            self._finish(name)
            self.console.print(f"{name}: killed after the {self.grace_s:g} s grace period")
        join_deadline = time.monotonic() + 2.0
        for child in self._children.values():
            child.pump.join(timeout=max(0.0, join_deadline - time.monotonic()))
        if self._lifeline_write >= 0:
            os.close(self._lifeline_write)
            os.close(self._lifeline_read)
            self._lifeline_write = self._lifeline_read = -1

    def _finish(self, name: str) -> int:
        """SIGKILL the child's process group — the child if it is still running, and what it
        left behind — then reap it (only now, so its group id is not reused before the kill)."""
        proc = self._children[name].proc
        _signal_group(proc, signal.SIGKILL)
        return proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The group id is the child's pid, as it leads its own session; a child that moved to
    # another group still gets the signal itself, or a stop could wait on it forever.
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        proc.send_signal(sig)  # a no-op once the child has exited
