"""A private Docker engine for `make images`, `make container-test` and `make test`.

The engine gets its own socket, data root and exec root, so nothing else on the machine talks to
it unless told to (DOCKER_HOST), and it is stopped by the PID it was started with — never by
name. Debian's `docker.io` (dockerd 20.10 with a managed containerd) is what it runs; `make`
installs the package where it is missing.

    python -m tools.containers.engine run -- CMD...   # start if needed, run, stop what it started
    python -m tools.containers.engine run --if-available -- CMD   # no engine possible: CMD alone
    python -m tools.containers.engine start | stop | status
    eval "$(python -m tools.containers.engine env)"   # point this shell's docker at it
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Under /var/lib and /run like the system engine's, but in folders of their own: the system
# engine (if any) and this one never share a socket, an image store or a bridge.
STATE = Path(os.environ.get("POSEFLEET_ENGINE_ROOT", "/var/lib/posefleet-docker"))
RUN = Path(os.environ.get("POSEFLEET_ENGINE_RUN", "/run/posefleet-docker"))
SOCKET = RUN / "docker.sock"
PIDFILE = RUN / "dockerd.pid"
LOG = STATE / "dockerd.log"
# The host's forwarding settings before dockerd changed them (it turns IPv4 forwarding on and
# sets the FORWARD policy to DROP), put back when the engine it started stops.
HOST_NETWORK = RUN / "host-forwarding"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
HOST = f"unix://{SOCKET}"
READY_TIMEOUT_S = 60.0  # dockerd answers in 2-5 s here; a first start initialises its store
STOP_TIMEOUT_S = 40.0  # dockerd's own shutdown gives containers 15 s, then cleans up
# Containers of the test suite and the harness talk only to loopback-published ports.
PUBLISH_IP = "127.0.0.1"
TESTCONTAINERS = {
    "TESTCONTAINERS_RYUK_DISABLED": "true",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TESTCONTAINERS_HOST_OVERRIDE": PUBLISH_IP,
}


class EngineUnavailable(RuntimeError):
    """No engine can run here (no dockerd, no root); the message says which and how to fix it."""


@dataclass(frozen=True)
class Engine:
    host: str
    pid: int | None  # set when this process started it and must stop it

    def env(self) -> dict[str, str]:
        """What a child process needs to use this engine, testcontainers included: no Ryuk
        reaper (its image cannot be pulled here; containers are removed by the code that made
        them), and published ports sought on 127.0.0.1, where this engine publishes them
        (where /.dockerenv exists, as on machines made from an image, testcontainers would
        think itself in a container and use the bridge's gateway address)."""
        return {**os.environ, "DOCKER_HOST": self.host, **TESTCONTAINERS}


def answers(host: str = HOST) -> bool:
    """Whether an engine answers on ``host`` (the API's /_ping, through the docker CLI)."""
    if not shutil.which("docker"):
        return False
    result = subprocess.run(
        ["docker", "-H", host, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        timeout=15,
        check=False,
    )
    return result.returncode == 0


def _root_prefix() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], check=False).returncode == 0:
        return ["sudo", "-n"]
    raise EngineUnavailable("dockerd needs root: run as root or with password-less sudo")


def default_route_mtu() -> int | None:
    """The MTU of the interface with the default route: containers' bridges must not exceed it
    (here 1400), or large downloads inside builds stall on dropped packets."""
    with contextlib.suppress(OSError, IndexError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                return int(Path(f"/sys/class/net/{fields[0]}/mtu").read_text())
    return None


def running_pid() -> int | None:
    """The PID in our pidfile if that process is a live dockerd."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(PIDFILE.read_text())
        if Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd":
            return pid
    return None


def start() -> Engine:
    """Start the private engine, or attach to it if it already runs; ``pid`` is set only when
    this call started it."""
    if answers():
        return Engine(HOST, None)
    if not shutil.which("dockerd") or not shutil.which("docker"):
        raise EngineUnavailable("no dockerd/docker: install Debian's docker.io (make engine)")
    prefix = _root_prefix()
    if running_pid() is not None:
        raise EngineUnavailable(f"dockerd {running_pid()} holds {PIDFILE} but does not answer")
    subprocess.run([*prefix, "mkdir", "-p", str(STATE), str(RUN)], check=True)
    _save_host_forwarding(prefix)
    cmd = [
        *prefix,
        "dockerd",
        f"--host={HOST}",
        f"--data-root={STATE / 'data'}",
        f"--exec-root={RUN / 'exec'}",
        f"--pidfile={PIDFILE}",
        f"--ip={PUBLISH_IP}",
        # the daemon's own containerd, under the exec root, not a system one
        "--containerd-namespace=posefleet",
        "--containerd-plugins-namespace=posefleet-plugins",
    ]
    if os.geteuid() != 0:
        cmd.append(f"--group={os.getgid()}")  # let the invoking user use the socket
    mtu = default_route_mtu()
    if mtu:
        cmd.append(f"--mtu={mtu}")
    with open(os.devnull, "rb") as stdin, _log_file(prefix) as log:
        proc = subprocess.Popen(
            cmd, stdin=stdin, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineUnavailable(f"dockerd exited with {proc.returncode}: {_log_tail()}")
        if answers():
            return Engine(HOST, running_pid() or proc.pid)
        time.sleep(0.5)  # poll interval while dockerd initialises
    stop(running_pid() or proc.pid)
    raise EngineUnavailable(f"dockerd did not answer within {READY_TIMEOUT_S:.0f} s: {_log_tail()}")


@contextlib.contextmanager
def _log_file(prefix: list[str]) -> Iterator[object]:
    if prefix:  # not root: let sudo's dockerd write where we cannot
        yield subprocess.DEVNULL
        return
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOG.open("ab") as log:
        yield log


def _log_tail() -> str:
    with contextlib.suppress(OSError):
        return LOG.read_text(errors="replace")[-1500:]
    return "(no log)"


def stop(pid: int | None = None) -> bool:
    """Stop the dockerd with ``pid`` (default: the one in our pidfile) with SIGTERM, SIGKILL
    after STOP_TIMEOUT_S; True if one was running."""
    pid = pid or running_pid()
    if pid is None:
        return False
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*prefix, "kill", "-TERM", str(pid)], check=False)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and not _gone(pid):
        time.sleep(0.2)  # poll interval while it stops its containers
    if not _gone(pid):
        subprocess.run([*prefix, "kill", "-KILL", str(pid)], check=False)
    _restore_host_forwarding(prefix)
    return True


def _forward_policy() -> str:
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True)
    first = rules.stdout.splitlines()[:1]
    return first[0].split()[-1] if first and first[0].startswith("-P FORWARD") else "ACCEPT"


def _save_host_forwarding(prefix: list[str]) -> None:
    if HOST_NETWORK.exists():  # an engine stopped uncleanly: keep the first snapshot
        return
    state = f"{IP_FORWARD.read_text().strip()} {_forward_policy()}"
    subprocess.run([*prefix, "sh", "-c", f"echo '{state}' > {HOST_NETWORK}"], check=True)


def _restore_host_forwarding(prefix: list[str]) -> None:
    with contextlib.suppress(OSError, ValueError):
        forward, policy = HOST_NETWORK.read_text().split()
        subprocess.run([*prefix, "iptables", "-P", "FORWARD", policy], check=False)
        subprocess.run([*prefix, "sh", "-c", f"echo {forward} > {IP_FORWARD}"], check=False)
        subprocess.run([*prefix, "rm", "-f", str(HOST_NETWORK)], check=False)


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited; reaps it when it is our child (a zombie still has /proc)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def engine() -> Iterator[Engine]:
    """The private engine for the block; stopped afterwards if this block started it."""
    current = start()
    try:
        yield current
    finally:
        if current.pid is not None:
            stop(current.pid)


def run(command: list[str], if_available: bool) -> int:
    try:
        with engine() as current:
            print(f"engine: {current.host}", file=sys.stderr)
            return subprocess.call(command, env=current.env())
    except EngineUnavailable as exc:
        if not if_available:
            raise SystemExit(f"engine: {exc}") from None
        print(f"engine: none ({exc}); running without one", file=sys.stderr)
        return subprocess.call(command)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="run a command with the engine up")
    run_parser.add_argument("--if-available", action="store_true")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    for action in ("start", "stop", "status", "env"):
        sub.add_parser(action)
    args = parser.parse_args()
    if args.action == "run":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("run needs a command after --")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the child gets Ctrl-C; we stop after it
        sys.exit(run(command, args.if_available))
    if args.action == "start":
        current = start()
        print(f"engine {'started' if current.pid else 'already running'}: DOCKER_HOST={HOST}")
    elif args.action == "stop":
        print("stopped" if stop() else "not running")
    elif args.action == "status":
        print(f"{HOST}: {'up' if answers() else 'down'} (pid {running_pid()})")
    else:
        exports = " ".join(f"{k}={v}" for k, v in {"DOCKER_HOST": HOST, **TESTCONTAINERS}.items())
        print(f"export {exports}")


if __name__ == "__main__":
    main()
