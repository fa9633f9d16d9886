"""Run several processes as one system, for ``posefleet up``.

Children start in their own sessions, so a terminal's Ctrl-C reaches only the supervisor, which
then stops them in order: SIGTERM to each (workers drain their batch), a grace period, SIGKILL
for stragglers. They also get PR_SET_PDEATHSIG, so even a SIGKILLed supervisor leaves nothing
running. Their output is streamed line by line behind a coloured name.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import IO

import httpx
from rich.console import Console
from rich.markup import escape

from services.cli.redis_server import die_with_parent_preexec

_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")
_LEVEL_STYLES = {"warning": "yellow", "error": "red", "critical": "bold red"}
# SIGHUP too: closing the terminal should stop the system as cleanly as Ctrl-C does.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_TAIL_LINES = 20


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None  # merged over os.environ
    ready_url: str | None = None  # answers 200 once the process can serve


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
    """Owns the children it starts; ``run_until_stopped`` must run in the main thread, the only
    one Python delivers signals to."""

    def __init__(self, console: Console | None = None, grace_s: float = 20.0) -> None:
        self.console = console or Console()
        self.grace_s = grace_s
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._specs: dict[str, ProcessSpec] = {}
        self._tails: dict[str, deque[str]] = {}
        self._pumps: dict[str, threading.Thread] = {}
        self._width = 0
        self._tail_lock = threading.Lock()
        # SimpleQueue: its put() is reentrant, so a signal handler may call it while the main
        # thread is inside get() (queue.Queue could deadlock on its own lock there).
        self._exited: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def start(self, spec: ProcessSpec) -> None:
        if spec.name in self._procs:
            raise ValueError(f"a process named {spec.name!r} was already started")
        proc = subprocess.Popen(
            spec.argv,
            env={**os.environ, **(spec.env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent_preexec(),
        )
        colour = _COLOURS[len(self._procs) % len(_COLOURS)]
        self._procs[spec.name] = proc
        self._specs[spec.name] = spec
        self._tails[spec.name] = deque(maxlen=_TAIL_LINES)
        self._width = max(self._width, len(spec.name))
        pump = threading.Thread(
            target=self._pump, args=(spec.name, proc.stdout, colour), daemon=True
        )
        pump.start()
        self._pumps[spec.name] = pump
        # Its own thread waits for the exit: end of output is no proof, since a grandchild may
        # hold the pipe open after the child died.
        threading.Thread(target=self._wait, args=(spec.name, proc), daemon=True).start()

    def _pump(self, name: str, stream: IO[bytes] | None, colour: str) -> None:
        assert stream is not None
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace").rstrip()
                with self._tail_lock:
                    self._tails[name].append(line)
                self.console.print(
                    f"[{colour}]{escape(name):<{self._width}}[/] │ {compact(line)}",
                    highlight=False,
                    soft_wrap=True,
                )

    def _wait(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._exited.put(name)

    def _tail(self, name: str) -> str:
        if self._procs[name].poll() is not None:  # its last lines are the useful ones
            self._pumps[name].join(timeout=1.0)
        with self._tail_lock:
            return "\n".join(self._tails[name])

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every ``ready_url`` answers 200; raise with the culprit's last lines if
        one does not in time or if any child exits meanwhile."""
        deadline = time.monotonic() + timeout_s
        pending = [s for s in self._specs.values() if s.ready_url is not None]
        # trust_env=False: an HTTP(S)_PROXY from the environment must not intercept 127.0.0.1.
        with httpx.Client(trust_env=False) as client:
            while True:
                for name, proc in self._procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with {describe_exit(proc.returncode)} before the "
                            f"system was ready:\n{self._tail(name)}"
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
        """Block until SIGINT/SIGTERM/SIGHUP (then 0) or until a child exits on its own (then its
        exit status, 128+N for a child killed by signal N, 1 for a child that exited 0 — a
        service is not supposed to end); either way every child is stopped before returning."""

        def on_signal(_signum: int, _frame: object) -> None:
            self._exited.put(None)

        previous = {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS}
        try:
            name = self._exited.get()
            if name is None:
                return 0
            code = self._procs[name].wait()
            self._pumps[name].join(timeout=1.0)  # its last lines first, then why we stop
            self.console.print(
                f"[red]{escape(name)} exited with {describe_exit(code)}; stopping[/red]"
            )
            return 128 - code if code < 0 else code or 1
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop_all()

    def stop_all(self) -> None:
        """SIGTERM every child, SIGKILL what is left after ``grace_s``. Signals go to each
        child's process group, so whatever a child spawned is stopped with it. Idempotent."""
        running = {n: p for n, p in self._procs.items() if p.poll() is None}
        for proc in running.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for name, proc in running.items():
            try:
                code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
                self.console.print(f"{name}: killed after the {self.grace_s:g} s grace period")
                continue
            self.console.print(f"{name}: exited {describe_exit(code)}")
        join_deadline = time.monotonic() + 2.0
        for pump in self._pumps.values():
            pump.join(timeout=max(0.0, join_deadline - time.monotonic()))


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The group id is the child's pid, as it leads its own session; a child that moved to
    # another group still gets the signal itself, or a stop could wait on it forever.
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        proc.send_signal(sig)  # a no-op once the child has exited
