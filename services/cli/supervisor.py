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
from dataclasses import dataclass
from typing import IO

import httpx
from rich.console import Console
from rich.markup import escape

from services.core.redis_server import die_with_parent

_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    ready_url: str | None = None


def _child_setup() -> None:
    os.setsid()
    die_with_parent()


def compact(line: str) -> str:
    """A JSON log line as ``level msg key=value …``; anything else unchanged."""
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
    text = f"{entry.get('level', ''):<7} {entry['msg']} {extra}".rstrip()
    if "exc" in entry:
        text += "\n" + entry["exc"]
    return escape(text)


class Supervisor:
    def __init__(self, console: Console | None = None, grace_s: float = 20.0) -> None:
        self.console = console or Console()
        self.grace_s = grace_s
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._specs: dict[str, ProcessSpec] = {}
        self._tails: dict[str, list[str]] = {}
        self._events: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._threads: list[threading.Thread] = []

    def start(self, spec: ProcessSpec) -> None:
        proc = subprocess.Popen(
            spec.argv,
            env={**os.environ, **(spec.env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_child_setup,
        )
        self._procs[spec.name] = proc
        self._specs[spec.name] = spec
        self._tails[spec.name] = []
        colour = _COLOURS[(len(self._procs) - 1) % len(_COLOURS)]
        thread = threading.Thread(
            target=self._pump,
            args=(spec.name, proc.stdout, colour),
            daemon=True,
            name=f"pump-{spec.name}",
        )
        thread.start()
        self._threads.append(thread)

    def _pump(self, name: str, stream: IO[bytes] | None, colour: str) -> None:
        assert stream is not None
        width = max(len(n) for n in self._procs)
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            tail = self._tails[name]
            tail.append(line)
            del tail[:-20]
            self.console.print(
                f"[{colour}]{name:<{width}}[/] │ {compact(line)}", highlight=False, soft_wrap=True
            )
        stream.close()
        self._events.put((name, None))  # EOF: the child has exited (or closed its output)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for name, spec in self._specs.items():
            if spec.ready_url is None:
                continue
            while True:
                if self._procs[name].poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {self._procs[name].returncode}:\n"
                        + "\n".join(self._tails[name])
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(spec.ready_url, timeout=1.0).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} not ready at {spec.ready_url} after "
                        f"{timeout_s:.0f} s:\n" + "\n".join(self._tails[name])
                    )
                time.sleep(0.1)  # poll interval for the readiness probe

    def run_until_stopped(self) -> int:
        """Block until SIGINT/SIGTERM (returns 0) or a child exits on its own (its code, or 1)."""
        stop = threading.Event()
        previous = {
            s: signal.signal(s, lambda *_: (stop.set(), self._events.put(("", None))))
            for s in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while not stop.is_set():
                name, _ = self._events.get()
                if name and not stop.is_set():
                    code = self._procs[name].wait()
                    self.console.print(f"[red]{name} exited with {code}; stopping[/red]")
                    return code or 1
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop_all()

    def stop_all(self) -> None:
        running = {n: p for n, p in self._procs.items() if p.poll() is None}
        for proc in running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for name, proc in running.items():
            try:
                code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
                self.console.print(f"{name}: killed after the {self.grace_s:.0f} s grace period")
                continue
            self.console.print(f"{name}: exited {code}")
        for thread in self._threads:
            thread.join(timeout=5)
