"""The chart's pod specs, executed: what a kubelet does with them, done with `docker run` on one
private network of the engine (tools/containers/engine.py).

Each pod (podspec.py) becomes one container: its image (never pulled), command and args, env
(Secrets and ConfigMaps resolved), user and groups, read-only root, dropped capabilities,
no-new-privileges, tmpfs for emptyDir, a docker volume per PersistentVolumeClaim (group-owned
by fsGroup, as the kubelet does), files for configMap/secret volumes, CPU and memory limits. Its
hostname is the pod name; its DNS aliases are the names of the Services selecting it, and where
a Service's port differs from the container's (gateway 80 -> 8080) the pod's network namespace
redirects it, as kube-proxy's rules do. Probes run as the kubelet runs them — HTTP and TCP from
the node (this host) to the pod's address, exec inside the container — with their periods,
timeouts and thresholds: startup first, then liveness (failure: stop with the grace period and
restart) and readiness. A container that exits is restarted per its restartPolicy with the
kubelet's back-off. Stopping is SIGTERM and the pod's terminationGracePeriodSeconds.

Not emulated: autoscalers (a Deployment runs `replicas`, 1 where an autoscaler owns the count),
NetworkPolicies, Service endpoints following readiness, emptyDir contents surviving a container
restart (tmpfs is new at each start).
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker as docker_sdk
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.redis_server import free_port
from tools.containers.dockercli import DockerError, docker
from tools.containers.engine import default_route_mtu
from tools.containers.podspec import Doc, Pod, Probe, Unsupported, pods, test_pods

LABEL = "posefleet.harness"
TICK_S = 0.2  # how often a pod's supervisor looks at its probes' schedules
# A pod counts as up once ready for this long (a Deployment's minReadySeconds): a pod without
# probes is "ready" the moment it starts, and one that dies in its first seconds is not up.
SETTLE_S = 3.0
# `docker exec` itself takes a few hundred ms to start on a busy host; that is not the probe's
# time, so exec probes get this much on top of their timeoutSeconds.
EXEC_ALLOWANCE_S = 3.0
BACKOFF_S = (0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0)  # the kubelet's restart back-off


class PodFailed(RuntimeError):
    """A pod did not become ready, crashed, or was refused; the message says which pod and why
    (its last probe failure, exit code and log tail)."""


@dataclass
class PodState:
    pod: Pod
    container: str
    run_at: float = 0.0
    ready_at: float | None = None
    started: bool = False  # startup probe passed (or none)
    ready: bool = False
    restarts: int = 0
    stopping: bool = False  # the harness stopped it: no restart
    exits: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    address: str = ""
    unready: str | None = None  # why the kubelet marked it unready after it had started
    up_since: float = 0.0  # the last (re)start
    exited: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event(self, text: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {text}")


def effective_user(pod: Pod, image_user: str) -> str:
    """The user the container runs as, after the kubelet's runAsNonRoot check."""
    c = pod.container
    uid = str(c.user) if c.user is not None else image_user.partition(":")[0] or "0"
    if c.run_as_non_root and not uid.isdigit():
        raise PodFailed(f"{pod.name}: image user {uid!r} is not numeric (runAsNonRoot)")
    if c.run_as_non_root and int(uid) == 0:
        raise PodFailed(f"{pod.name}: runAsNonRoot, but the container would run as root")
    if c.user is None:
        return image_user
    return f"{c.user}:{c.group}" if c.group is not None else str(c.user)


class Fleet:
    """The chart's pods on a private network; a context manager that removes everything it made.

    ``publish`` maps an owner (Deployment name) to container ports to publish on 127.0.0.1, as
    `kubectl port-forward` would; ``select`` picks which pods run (all by default)."""

    def __init__(
        self,
        docs: list[Doc],
        name: str = "pf",
        namespace: str = "default",
        publish: dict[str, list[int]] | None = None,
        select: Callable[[Pod], bool] = lambda pod: True,
    ) -> None:
        self.docs = docs
        self.name = name
        self.namespace = namespace
        self.publish = publish or {}
        self.pods = [p for p in pods(docs, namespace) if select(p)]
        self.states: dict[str, PodState] = {}
        # (pod, container port) -> host port on 127.0.0.1, kept across restarts
        self.published: dict[tuple[str, int], int] = {}
        self.client = docker_sdk.from_env(timeout=120)
        self.files = Path(tempfile.mkdtemp(prefix=f"posefleet-{name}-"))
        self.files.chmod(0o755)  # configMap files are read by the pods' non-root users
        self.closed = threading.Event()

    # ---- lifecycle ----

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.down()

    def up(self, timeout_s: float = 300.0) -> dict[str, float]:
        """Start every pod — StatefulSets first, ready before the rest — and wait until all are
        ready; returns seconds from `docker run` to ready per pod."""
        remove_leftovers(self.name)
        mtu = default_route_mtu()
        options = ["--opt", f"com.docker.network.driver.mtu={mtu}"] if mtu else []
        docker("network", "create", "--label", f"{LABEL}={self.name}", *options, self.name)
        for kind in ("StatefulSet", "Deployment"):
            batch = [p for p in self.pods if p.kind == kind]
            for pod in batch:
                self.start(pod.name)
            self.wait_ready([p.name for p in batch], timeout_s)
        return {n: s.ready_at - s.run_at for n, s in self.states.items() if s.ready_at}

    def down(self) -> None:
        """Stop every pod with its grace period (in parallel), then remove what was made."""
        self.closed.set()
        stoppers = [
            threading.Thread(target=self._stop_quietly, args=(name,)) for name in self.states
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        remove_leftovers(self.name)
        shutil.rmtree(self.files, ignore_errors=True)
        self.client.close()

    def _stop_quietly(self, name: str) -> None:
        with contextlib.suppress(DockerError, PodFailed):
            self.stop(name)

    # ---- one pod ----

    def start(self, name: str) -> PodState:
        """Create and start pod ``name``'s container (a new pod: its volumes persist)."""
        pod = self._pod(name)
        if name in self.states:  # its supervisor must not restart the container we replace
            self.states[name].stopping = True
        state = PodState(pod, f"{self.name}-{pod.name}")
        with contextlib.suppress(DockerError):
            docker("rm", "--force", state.container)
        self._prepare_volumes(pod)
        user = effective_user(pod, self._image_user(pod.container.image))
        state.run_at = time.monotonic()
        try:
            docker(*self.run_argv(pod, user))
        except DockerError as exc:
            raise PodFailed(f"{pod.name}: docker run failed: {exc}") from None
        self.states[name] = state
        self._on_started(state)
        threading.Thread(target=self._supervise, args=(state,), daemon=True).start()
        return state

    def stop(self, name: str) -> tuple[int, float]:
        """Delete the pod: SIGTERM, SIGKILL after its grace period. Returns (exit code, seconds
        it took to exit)."""
        state = self.states[name]
        state.stopping = True
        started = time.monotonic()
        docker("stop", "--time", str(state.pod.grace), state.container, check=False)
        state.exited.wait(timeout=state.pod.grace + 30)
        code = self.client.api.inspect_container(state.container)["State"]["ExitCode"]
        state.event(f"stopped: exit {code}")
        return code, time.monotonic() - started

    def kill(self, name: str, signal: str = "KILL") -> None:
        """Send ``signal`` to the pod's process, as a crash would; the pod restarts per its
        restartPolicy."""
        self.states[name].event(f"killed with SIG{signal}")
        docker("kill", "--signal", signal, self.states[name].container)

    def recreate(self, name: str, timeout_s: float = 300.0) -> float:
        """Delete the pod and create it again (its volumes stay), as a rescheduled pod; returns
        seconds to ready."""
        self.stop(name)
        state = self.start(name)
        self.wait_ready([name], timeout_s)
        return (state.ready_at or 0.0) - state.run_at

    def logs(self, name: str, tail: int = 40) -> str:
        result = subprocess.run(
            ["docker", "logs", "--tail", str(tail), self.states[name].container],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout + result.stderr

    def url(self, owner: str, port: int) -> str:
        """http://127.0.0.1:N of a published container port of the owner's first pod."""
        return f"http://127.0.0.1:{self.published[(self.pod_of(owner), port)]}"

    def pod_of(self, owner: str) -> str:
        return next(p.name for p in self.pods if p.owner == owner)

    # ---- readiness ----

    def wait_ready(
        self, names: Iterable[str], timeout_s: float, allow_restarts: bool = False
    ) -> None:
        """Wait until every named pod is ready and has stayed up for SETTLE_S. Unless
        ``allow_restarts``, an exit on the way is a failure: a pod that crashes while coming up
        is broken, whatever a later retry does."""
        deadline = time.monotonic() + timeout_s
        waiting = list(names)
        while waiting:
            for name in list(waiting):
                state = self.states[name]
                if state.exits and not state.stopping and not allow_restarts:
                    raise PodFailed(self.explain(name, f"exited with {state.exits[-1]}"))
                if state.unready and not allow_restarts:  # started, then failed readiness
                    raise PodFailed(self.explain(name, state.unready))
                up_since = state.up_since
                if state.ready and time.monotonic() - up_since >= SETTLE_S:
                    waiting.remove(name)
            if waiting and time.monotonic() > deadline:
                why = f"not ready after {timeout_s:.0f} s"
                raise PodFailed("\n\n".join(self.explain(n, why) for n in waiting))
            time.sleep(TICK_S)

    def explain(self, name: str, what: str) -> str:
        state = self.states[name]
        events = "\n  ".join(state.events[-8:])
        return f"pod {name}: {what}\n  {events}\n--- logs ---\n{self.logs(name)}"

    # ---- helm test ----

    def run_tests(self, timeout_s: float = 300.0) -> list[tuple[str, int, str]]:
        """Run the chart's `helm test` pods to completion: (name, exit code, logs) each."""
        results = []
        for pod in test_pods(self.docs, self.namespace):
            container = f"{self.name}-{pod.name}"
            self._prepare_volumes(pod)
            user = effective_user(pod, self._image_user(pod.container.image))
            docker(*self.run_argv(pod, user))
            try:
                status = self.client.api.wait(container, timeout=timeout_s)
            except Exception as exc:  # the SDK's read timeout: the test never finished
                raise PodFailed(f"test pod {pod.name} did not finish in {timeout_s} s") from exc
            output = subprocess.run(
                ["docker", "logs", container], capture_output=True, text=True, check=False
            )
            results.append((pod.name, status["StatusCode"], output.stdout + output.stderr))
            docker("rm", "--force", container)
        return results

    # ---- internals ----

    def _pod(self, name: str) -> Pod:
        try:
            return next(p for p in self.pods if p.name == name)
        except StopIteration:
            raise PodFailed(f"no pod {name}; the chart has {[p.name for p in self.pods]}") from None

    def _image_user(self, image: str) -> str:
        try:
            return self.client.api.inspect_image(image)["Config"].get("User") or "0"
        except docker_sdk.errors.ImageNotFound:
            raise PodFailed(f"image {image} is not in the engine (nothing is pulled)") from None

    def run_argv(self, pod: Pod, user: str) -> list[str]:
        """The `docker run` arguments for the pod (env in a file: passwords stay out of ps)."""
        c = pod.container
        name = f"{self.name}-{pod.name}"
        argv = ["run", "--detach", "--pull", "never", "--name", name, "--hostname", pod.name]
        argv += ["--network", self.name, "--label", f"{LABEL}={self.name}", "--user", user]
        for alias in (pod.name, *pod.aliases):
            argv += ["--network-alias", alias]
        argv += ["--env-file", str(self._env_file(pod)), "--stop-timeout", str(pod.grace)]
        for group in c.extra_groups:
            argv += ["--group-add", str(group)]
        argv += ["--read-only"] * c.read_only + ["--privileged"] * c.privileged
        argv += [a for cap in c.cap_drop for a in ("--cap-drop", cap)]
        argv += [a for cap in c.cap_add for a in ("--cap-add", cap)]
        argv += ["--security-opt", "no-new-privileges"] * c.no_new_privileges
        argv += ["--security-opt", "seccomp=unconfined"] * (c.seccomp == "Unconfined")
        if c.cpus:
            argv += ["--cpus", f"{c.cpus:g}"]
        if c.cpu_shares:
            argv += ["--cpu-shares", str(c.cpu_shares)]
        if c.memory:  # no swap, as on a kubelet's node
            argv += ["--memory", str(c.memory), "--memory-swap", str(c.memory)]
        argv += self._mount_args(pod)
        if c.working_dir:
            argv += ["--workdir", c.working_dir]
        for port in self.publish.get(pod.owner, []):
            host_port = self.published.setdefault((pod.name, port), free_port())
            argv += ["--publish", f"127.0.0.1:{host_port}:{port}"]
        command = list(c.command or [])
        if command:  # Kubernetes' command replaces the entrypoint, and then the image's CMD too
            argv += ["--entrypoint", command[0], c.image, *command[1:], *(c.args or [])]
        else:
            argv += [c.image, *(c.args or [])]
        return argv

    def _env_file(self, pod: Pod) -> Path:
        path = self.files / pod.name / "env"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for key, value in pod.container.env:
            if "\n" in value:
                raise Unsupported(f"{pod.name}: env {key} spans lines (docker env files cannot)")
            lines.append(f"{key}={value}\n")
        path.write_text("".join(lines))
        path.chmod(0o600)
        return path

    def _mount_args(self, pod: Pod) -> list[str]:
        args = []
        for mount in pod.container.mounts:
            if mount.kind == "tmpfs":
                options = "rw,exec,nosuid,nodev,mode=1777" + (
                    f",size={mount.size}" if mount.size else ""
                )
                args += ["--tmpfs", f"{mount.path}:{options}"]
            elif mount.kind == "files":
                folder = self.files / pod.name / mount.volume
                for relative, content in mount.files:
                    target = folder / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(content)
                    target.chmod(0o644)
                for path in [folder, *folder.rglob("*")]:
                    if path.is_dir():
                        path.chmod(0o755)
                args += ["--mount", f"type=bind,source={folder},target={mount.path},readonly"]
            else:
                ro = ",readonly" if mount.read_only else ""
                volume = f"{self.name}-{mount.volume}"
                args += ["--mount", f"type=volume,source={volume},target={mount.path}{ro}"]
        return args

    def _prepare_volumes(self, pod: Pod) -> None:
        """Create the pod's claimed volumes once; with an fsGroup, make them group-owned and
        group-writable (setgid), as the kubelet does with the pod's volumes."""
        for mount in pod.container.mounts:
            if mount.kind != "volume":
                continue
            volume = f"{self.name}-{mount.volume}"
            if docker("volume", "ls", "--quiet", "--filter", f"name=^{volume}$").strip():
                continue
            docker("volume", "create", "--label", f"{LABEL}={self.name}", volume)
            if pod.fs_group is not None:
                script = f"chgrp -R {pod.fs_group} /v && chmod -R g+rwX /v && chmod g+s /v"
                docker("run", "--rm", "--pull", "never", "--user", "0", "--network", "none",
                       "--entrypoint", "sh", "--mount", f"type=volume,source={volume},target=/v",
                       pod.container.image, "-c", script)  # fmt: skip

    def _on_started(self, state: PodState) -> None:
        """After each (re)start: learn the address, apply the Service port redirects, and
        watch for the exit."""
        info = self.client.api.inspect_container(state.container)
        state.address = info["NetworkSettings"]["Networks"][self.name]["IPAddress"]
        state.exited.clear()
        state.started = state.ready = False
        state.unready = None
        state.up_since = time.monotonic()
        state.event(f"started at {state.address or '(no address: it exited)'}")
        pid = info["State"]["Pid"]
        for port, target in state.pod.redirects if pid else ():
            subprocess.run(
                ["nsenter", "--target", str(pid), "--net", "iptables", "-t",
                 "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", str(port), "-j",
                 "REDIRECT", "--to-ports", str(target)],
                check=True,
            )  # fmt: skip
        threading.Thread(target=self._wait_exit, args=(state,), daemon=True).start()

    def _wait_exit(self, state: PodState) -> None:
        with contextlib.suppress(Exception):  # the container was removed: nothing to wait for
            code = self.client.api.wait(state.container, timeout=None)["StatusCode"]
            with state.lock:
                state.exits.append(code)
                state.ready = False
                state.event(f"exited with {code}")
        state.exited.set()

    def _supervise(self, state: PodState) -> None:
        """The kubelet's loop for one pod: probes on their schedules, restarts on exit."""
        while not self.closed.is_set() and not state.stopping:
            schedule = _Schedule(state.pod, time.monotonic())
            while not state.exited.is_set() and not state.stopping and not self.closed.is_set():
                verdict = schedule.tick(self._probe, state)
                if verdict == "restart":
                    state.event("killing: failed liveness/startup probe")
                    docker("stop", "--time", str(state.pod.grace), state.container, check=False)
                    state.exited.wait(timeout=state.pod.grace + 30)
                    break
                time.sleep(TICK_S)
            if state.stopping or self.closed.is_set():
                return
            code = state.exits[-1] if state.exits else 0
            if state.pod.restart == "Never" or (state.pod.restart == "OnFailure" and code == 0):
                return
            delay = BACKOFF_S[min(state.restarts, len(BACKOFF_S) - 1)]
            state.event(f"back-off {delay:.0f} s, then restart")
            if self.closed.wait(delay) or state.stopping:
                return
            state.restarts += 1
            docker("start", state.container)
            self._on_started(state)

    def _probe(self, state: PodState, probe: Probe) -> str | None:
        """None if the probe succeeds, else why not."""
        try:
            if probe.kind == "exec":
                result = subprocess.run(
                    ["docker", "exec", state.container, *probe.command],
                    capture_output=True,
                    text=True,
                    timeout=probe.timeout + EXEC_ALLOWANCE_S,
                    check=False,
                )
                return None if result.returncode == 0 else f"exit {result.returncode}"
            if probe.kind == "tcp":
                socket.create_connection((state.address, probe.port), probe.timeout).close()
                return None
            if probe.kind == "grpc":
                return _grpc_health(f"{state.address}:{probe.port}", probe.path, probe.timeout)
            connection = http.client.HTTPConnection(state.address, probe.port, probe.timeout)
            try:
                headers = {"User-Agent": "kube-probe/1.35", "Accept": "*/*", **dict(probe.headers)}
                connection.request("GET", probe.path, headers=headers)
                status = connection.getresponse().status
            finally:
                connection.close()
            return None if 200 <= status < 400 else f"HTTP {status}"
        except (OSError, subprocess.TimeoutExpired, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}"


def _grpc_health(target: str, service: str, timeout_s: float) -> str | None:
    """The kubelet's gRPC probe: grpc.health.v1 Check, passing only on SERVING."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            return f"gRPC {exc.code().name}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"gRPC health {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


class _Schedule:
    """When each of a pod's probes is due and what their results mean, per the kubelet: the
    startup probe alone until it passes; then liveness (restart after failureThreshold) and
    readiness (ready after successThreshold, unready after failureThreshold)."""

    def __init__(self, pod: Pod, started: float) -> None:
        c = pod.container
        self.startup, self.liveness, self.readiness = c.startup, c.liveness, c.readiness
        self.due: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        self.successes: dict[str, int] = {}
        for kind, probe in self.probes():
            self.due[kind] = started + probe.initial_delay
        self.started_at = started

    def probes(self) -> Iterator[tuple[str, Probe]]:
        for kind in ("startup", "liveness", "readiness"):
            probe = getattr(self, kind)
            if probe is not None:
                yield kind, probe

    def tick(self, run: Callable[[PodState, Probe], str | None], state: PodState) -> str | None:
        now = time.monotonic()
        if not state.started and self.startup is None:
            state.started = True
        if state.started and self.readiness is None and not state.ready:
            self._ready(state)
        for kind, probe in self.probes():
            if (kind == "startup") == state.started or now < self.due[kind]:
                continue
            self.due[kind] = now + probe.period
            failure = run(state, probe)
            if failure is None:
                self.failures[kind] = 0
                self.successes[kind] = self.successes.get(kind, 0) + 1
                if kind == "startup":
                    state.started = True
                    state.event(f"startup probe passed after {now - self.started_at:.1f} s")
                    for other, other_probe in self.probes():  # their delays count from here
                        self.due[other] = max(self.due[other], now + other_probe.initial_delay)
                elif (
                    kind == "readiness"
                    and not state.ready
                    and self.successes[kind] >= probe.success_threshold
                ):
                    self._ready(state)
                continue
            self.successes[kind] = 0
            self.failures[kind] = self.failures.get(kind, 0) + 1
            state.event(f"{kind} probe {probe.describe()} failed: {failure}")
            if self.failures[kind] >= probe.failure_threshold:
                if kind == "readiness":
                    state.ready = False
                    state.unready = f"unready: readiness probe {probe.describe()}: {failure}"
                else:
                    return "restart"
        return None

    @staticmethod
    def _ready(state: PodState) -> None:
        state.ready, state.unready = True, None
        if state.ready_at is None:
            state.ready_at = time.monotonic()
        state.event(f"ready after {state.ready_at - state.run_at:.1f} s")


def remove_leftovers(name: str) -> None:
    """Remove the containers, network and volumes of a fleet called ``name`` (a crashed run's
    too)."""
    found = docker("ps", "--all", "--quiet", "--filter", f"label={LABEL}={name}").split()
    if found:
        docker("rm", "--force", "--volumes", *found)
    networks = docker("network", "ls", "--quiet", "--filter", f"label={LABEL}={name}").split()
    if networks:
        docker("network", "rm", *networks)
    volumes = docker("volume", "ls", "--quiet", "--filter", f"label={LABEL}={name}").split()
    if volumes:
        docker("volume", "rm", "--force", *volumes)
