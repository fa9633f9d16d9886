"""The chart's pods as a kubelet reads them: every Deployment's and StatefulSet's pod template
(and the `helm test` pods) from `helm template` output, with env values resolved from the
rendered Secrets and ConfigMaps, `$(VAR)` references expanded, volumes, security context,
resources, ports and probes — everything the harness (kubelet.py) and the compose file
(compose.py) turn into containers.

A field this module does not know stops the translation (``Unsupported``) instead of being
dropped: whatever the chart says must be what runs, so a pod spec the harness would run
differently from a kubelet must not run at all. The few fields that cannot matter on one
machine without an API server are listed in IGNORED with the reason.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

Doc = dict[str, Any]

# Pod fields with no meaning for containers on one engine, and why.
IGNORED = {
    "automountServiceAccountToken": "no API server, so no token to mount",
    "imagePullSecrets": "images are local; nothing is pulled",
    "nodeSelector": "one node",
    "tolerations": "one node, no taints",
}
POD_FIELDS = {
    "containers", "securityContext", "terminationGracePeriodSeconds", "volumes", "restartPolicy",
    "enableServiceLinks", *IGNORED,
}  # fmt: skip
CONTAINER_FIELDS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "envFrom", "ports",
    "startupProbe", "readinessProbe", "livenessProbe", "resources", "securityContext",
    "volumeMounts", "workingDir",
}  # fmt: skip
SECURITY_FIELDS = {
    "runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "supplementalGroups",
    "allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities", "seccompProfile",
    "privileged",
}  # fmt: skip
PROBE_DEFAULTS = {
    "initialDelaySeconds": 0,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "successThreshold": 1,
    "failureThreshold": 3,
}
EXTENDED_RESOURCES = re.compile(r".+/.+")  # nvidia.com/gpu, aws.amazon.com/neuron, ...
QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
SUFFIX = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}  # fmt: skip
VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class Unsupported(ValueError):
    """The pod asks for something the harness does not emulate (or cannot resolve, like a
    missing Secret: a kubelet would refuse it with CreateContainerConfigError)."""


@dataclass(frozen=True)
class Probe:
    kind: str  # http | tcp | grpc | exec
    port: int | None
    path: str
    command: tuple[str, ...]
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int
    headers: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        if self.kind == "http":
            return f"http-get :{self.port}{self.path}"
        if self.kind == "grpc":
            return f"grpc :{self.port} service={self.path!r}"
        return f"tcp-socket :{self.port}" if self.kind == "tcp" else f"exec {list(self.command)}"


@dataclass(frozen=True)
class Mount:
    kind: str  # tmpfs (emptyDir) | files (configMap/secret) | volume (PersistentVolumeClaim)
    volume: str
    path: str
    read_only: bool
    files: tuple[tuple[str, bytes], ...] = ()  # kind files: relative path -> content
    size: int | None = None  # tmpfs: emptyDir.sizeLimit


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...] | None  # replaces the image's ENTRYPOINT
    args: tuple[str, ...] | None  # replaces the image's CMD
    env: tuple[tuple[str, str], ...]
    working_dir: str | None
    user: int | None
    group: int | None
    extra_groups: tuple[int, ...]
    run_as_non_root: bool
    read_only: bool
    cap_drop: tuple[str, ...]
    cap_add: tuple[str, ...]
    no_new_privileges: bool
    privileged: bool
    seccomp: str  # RuntimeDefault | Unconfined
    cpus: float | None
    cpu_shares: int | None
    memory: int | None
    ports: tuple[tuple[str, int], ...]  # (name or str(port), containerPort)
    mounts: tuple[Mount, ...]
    startup: Probe | None
    readiness: Probe | None
    liveness: Probe | None


@dataclass(frozen=True)
class Pod:
    name: str  # the pod's name, and its hostname
    owner: str  # the Deployment / StatefulSet / Pod it comes from
    kind: str
    container: Container
    grace: int  # terminationGracePeriodSeconds
    restart: str  # Always | OnFailure | Never
    aliases: tuple[str, ...] = ()  # DNS names: the Services selecting it (+ StatefulSet names)
    # Service port -> container port where they differ (kube-proxy's job)
    redirects: tuple[tuple[int, int], ...] = ()
    fs_group: int | None = None
    labels: tuple[tuple[str, str], ...] = field(default=(), compare=False)


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("250m", "2Gi", 1) as a number."""
    match = QUANTITY.match(str(value))
    if not match:
        raise Unsupported(f"quantity {value!r}")
    return float(match[1]) * SUFFIX.get(match[2] or "", 1)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`,
    anything else stays as written."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return VAR_REF.sub(replace, text)


class Objects:
    """The rendered Secrets and ConfigMaps, for env references and volumes."""

    def __init__(self, docs: Iterable[Doc]) -> None:
        self.data: dict[tuple[str, str], dict[str, bytes]] = {}
        for doc in docs:
            kind, name = doc["kind"], doc["metadata"]["name"]
            if kind == "Secret":
                found = {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}
                found |= {k: v.encode() for k, v in (doc.get("stringData") or {}).items()}
            elif kind == "ConfigMap":
                found = {k: v.encode() for k, v in (doc.get("data") or {}).items()}
                found |= {k: base64.b64decode(v) for k, v in (doc.get("binaryData") or {}).items()}
            else:
                continue
            self.data[(kind, name)] = found

    def get(self, kind: str, name: str) -> dict[str, bytes]:
        if (kind, name) not in self.data:
            raise Unsupported(f"{kind} {name!r} is referenced but not rendered by the chart")
        return self.data[(kind, name)]

    def key(self, kind: str, ref: Doc) -> str | None:
        try:
            values = self.get(kind, ref["name"])
            if ref["key"] not in values:
                raise Unsupported(f"{kind} {ref['name']!r} has no key {ref['key']!r}")
        except Unsupported:
            if ref.get("optional"):
                return None
            raise
        return values[ref["key"]].decode()


def service_links(docs: list[Doc]) -> dict[str, str]:
    """The variables the kubelet puts in every container for each Service of the namespace
    (and the API server's `kubernetes` Service) while the pod's enableServiceLinks is true, as
    it is by default: FOO_SERVICE_HOST, FOO_PORT=tcp://IP:PORT, ... Their names can collide with
    an application's own prefix (a Service `posefleet-redis` gives POSEFLEET_REDIS_PORT), so
    they are injected here too. The addresses are stand-in ClusterIPs (nothing answers there),
    as a cluster's are no pod's."""
    services = [("kubernetes", [{"name": "https", "port": 443, "protocol": "TCP"}])]
    services += [
        (d["metadata"]["name"], d["spec"]["ports"]) for d in docs if d["kind"] == "Service"
    ]
    env = {}
    for index, (name, ports) in enumerate(services, start=1):
        prefix, ip = name.upper().replace("-", "_"), f"10.96.0.{index}"
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        env[f"{prefix}_PORT"] = (
            f"{ports[0].get('protocol', 'TCP').lower()}://{ip}:{ports[0]['port']}"
        )
        for port in ports:
            number, protocol = port["port"], port.get("protocol", "TCP")
            if "name" in port:
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(number)
            base = f"{prefix}_PORT_{number}_{protocol}"
            env[base] = f"{protocol.lower()}://{ip}:{number}"
            env |= {f"{base}_PROTO": protocol.lower(), f"{base}_PORT": str(number)}
            env[f"{base}_ADDR"] = ip
    return env


def _resolve_env(
    spec: Doc, objects: Objects, pod_name: str, namespace: str, links: dict[str, str]
) -> dict[str, str]:
    env: dict[str, str] = dict(links)  # the container's own variables override them
    for source in spec.get("envFrom", []):
        prefix = source.get("prefix", "")
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        for key, value in objects.get(kind, ref["name"]).items():
            env[prefix + key] = value.decode()
    for item in spec.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
            continue
        source = item.get("valueFrom", {})
        if "secretKeyRef" in source:
            value = objects.key("Secret", source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = objects.key("ConfigMap", source["configMapKeyRef"])
        elif source.get("fieldRef", {}).get("fieldPath") in ("metadata.name", "metadata.namespace"):
            path = source["fieldRef"]["fieldPath"]
            value = pod_name if path == "metadata.name" else namespace
        else:
            raise Unsupported(f"env {name}: {source} is not emulated")
        if value is not None:  # an absent optional reference defines nothing
            env[name] = value
    return env


def _probe(spec: Doc | None, ports: dict[str, int]) -> Probe | None:
    if spec is None:
        return None
    timing = {**PROBE_DEFAULTS, **{k: v for k, v in spec.items() if k in PROBE_DEFAULTS}}
    common = {
        "initial_delay": timing["initialDelaySeconds"],
        "period": timing["periodSeconds"],
        "timeout": timing["timeoutSeconds"],
        "success_threshold": timing["successThreshold"],
        "failure_threshold": timing["failureThreshold"],
    }
    unknown = set(spec) - set(PROBE_DEFAULTS) - {"httpGet", "tcpSocket", "grpc", "exec"}
    if unknown:
        raise Unsupported(f"probe fields {sorted(unknown)}")
    if "exec" in spec:
        return Probe("exec", None, "", tuple(spec["exec"]["command"]), **common)
    if "grpc" in spec:  # the standard grpc.health.v1 service; a port number, never a name
        grpc = spec["grpc"]
        return Probe("grpc", int(grpc["port"]), grpc.get("service", ""), (), **common)
    action = spec.get("httpGet") or spec.get("tcpSocket")
    if action is None:
        raise Unsupported(f"probe {spec}")
    port = action["port"]
    if isinstance(port, str) and not port.isdigit():
        if port not in ports:
            raise Unsupported(f"probe port {port!r} names no container port")
        port = ports[port]
    if "httpGet" in spec:
        if action.get("scheme", "HTTP") != "HTTP" or action.get("host"):
            raise Unsupported("only plain HTTP probes to the pod are emulated")
        headers = tuple((h["name"], h["value"]) for h in action.get("httpHeaders", []))
        return Probe("http", int(port), action.get("path", "/"), (), **common, headers=headers)
    return Probe("tcp", int(port), "", (), **common)


def _security(pod_ctx: Doc, ctx: Doc) -> dict[str, Any]:
    unknown = (set(pod_ctx) | set(ctx)) - SECURITY_FIELDS
    if unknown:
        raise Unsupported(f"securityContext fields {sorted(unknown)}")
    merged = {**pod_ctx, **ctx}  # the container's settings win, as in Kubernetes
    seccomp = merged.get("seccompProfile", {"type": "RuntimeDefault"})["type"]
    if seccomp not in ("RuntimeDefault", "Unconfined"):
        raise Unsupported(f"seccompProfile {seccomp}")
    capabilities = ctx.get("capabilities", {})
    return {
        "user": merged.get("runAsUser"),
        "group": merged.get("runAsGroup"),
        "extra_groups": tuple(
            [pod_ctx["fsGroup"]] * ("fsGroup" in pod_ctx) + pod_ctx.get("supplementalGroups", [])
        ),
        "run_as_non_root": bool(merged.get("runAsNonRoot")),
        "read_only": bool(ctx.get("readOnlyRootFilesystem")),
        "cap_drop": tuple(capabilities.get("drop", [])),
        "cap_add": tuple(capabilities.get("add", [])),
        # Kubernetes' default is true; false is Linux's no_new_privs
        "no_new_privileges": ctx.get("allowPrivilegeEscalation") is False,
        "privileged": bool(ctx.get("privileged")),
        "seccomp": seccomp,
    }


def _resources(spec: Doc) -> dict[str, Any]:
    limits, requests = spec.get("limits", {}), spec.get("requests", {})
    extended = sorted(k for k in {*limits, *requests} if EXTENDED_RESOURCES.match(k))
    if extended:
        raise Unsupported(f"needs {extended}, which this machine does not have")
    unknown = {*limits, *requests} - {"cpu", "memory", "ephemeral-storage"}
    if unknown:
        raise Unsupported(f"resources {sorted(unknown)}")
    cpu_request = requests.get("cpu")
    return {
        "cpus": quantity(limits["cpu"]) if "cpu" in limits else None,
        "memory": int(quantity(limits["memory"])) if "memory" in limits else None,
        # the kubelet's conversion of a CPU request to cgroup shares
        "cpu_shares": max(2, int(quantity(cpu_request) * 1024)) if cpu_request else None,
    }


def _mounts(
    spec: Doc, volumes: dict[str, Doc], claims: set[str], objects: Objects, pod: str
) -> tuple[Mount, ...]:
    mounts = []
    for mount in spec.get("volumeMounts", []):
        name, path = mount["name"], mount["mountPath"]
        unknown = set(mount) - {"name", "mountPath", "readOnly"}
        if unknown:
            raise Unsupported(f"volumeMount fields {sorted(unknown)}")
        read_only = bool(mount.get("readOnly"))
        if name in claims:
            mounts.append(Mount("volume", f"{name}-{pod}", path, read_only))
            continue
        if name not in volumes:
            raise Unsupported(f"volumeMount {name!r} names no volume")
        volume = volumes[name]
        if "emptyDir" in volume:
            limit = (volume["emptyDir"] or {}).get("sizeLimit")
            size = int(quantity(limit)) if limit else None
            mounts.append(Mount("tmpfs", name, path, read_only, size=size))
        elif "configMap" in volume or "secret" in volume:
            kind = "ConfigMap" if "configMap" in volume else "Secret"
            source = volume.get("configMap") or volume["secret"]
            data = objects.get(kind, source.get("name") or source.get("secretName"))
            items = source.get("items") or [{"key": k, "path": k} for k in sorted(data)]
            files = tuple((item["path"], data[item["key"]]) for item in items)
            # both are read-only in Kubernetes, whatever the mount says
            mounts.append(Mount("files", name, path, True, files=files))
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            mounts.append(Mount("volume", claim, path, read_only))
        else:
            raise Unsupported(f"volume {name!r}: {sorted(volume)} is not emulated")
    return tuple(mounts)


def _container(
    spec: Doc,
    pod_spec: Doc,
    objects: Objects,
    claims: set[str],
    pod: str,
    namespace: str,
    links: dict[str, str],
) -> Container:
    unknown = set(spec) - CONTAINER_FIELDS
    if unknown:
        raise Unsupported(f"container {spec['name']}: fields {sorted(unknown)}")
    links = links if pod_spec.get("enableServiceLinks", True) else {}
    env = _resolve_env(spec, objects, pod, namespace, links)
    declared = spec.get("ports", [])
    ports = {p.get("name", str(p["containerPort"])): p["containerPort"] for p in declared}
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    command = spec.get("command")
    args = spec.get("args")
    return Container(
        name=spec["name"],
        image=spec["image"],
        command=tuple(expand(c, env) for c in command) if command is not None else None,
        args=tuple(expand(a, env) for a in args) if args is not None else None,
        env=tuple(env.items()),
        working_dir=spec.get("workingDir"),
        **_security(pod_spec.get("securityContext", {}), spec.get("securityContext", {})),
        **_resources(spec.get("resources", {})),
        ports=tuple(ports.items()),
        mounts=_mounts(spec, volumes, claims, objects, pod),
        startup=_probe(spec.get("startupProbe"), ports),
        readiness=_probe(spec.get("readinessProbe"), ports),
        liveness=_probe(spec.get("livenessProbe"), ports),
    )


def _pod(
    template: Doc,
    name: str,
    owner: str,
    kind: str,
    objects: Objects,
    claims: set[str],
    namespace: str,
    links: dict[str, str],
) -> Pod:
    spec = template["spec"]
    unknown = set(spec) - POD_FIELDS
    if unknown:
        raise Unsupported(f"{kind} {owner}: pod fields {sorted(unknown)}")
    if len(spec["containers"]) != 1:
        raise Unsupported(f"{kind} {owner}: only one container per pod is emulated")
    return Pod(
        name=name,
        owner=owner,
        kind=kind,
        container=_container(spec["containers"][0], spec, objects, claims, name, namespace, links),
        grace=spec.get("terminationGracePeriodSeconds", 30),
        restart=spec.get("restartPolicy", "Always"),
        fs_group=spec.get("securityContext", {}).get("fsGroup"),
        labels=tuple(sorted(template["metadata"].get("labels", {}).items())),
    )


def _services(docs: list[Doc], pod: Pod) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    labels = dict(pod.labels)
    ports = dict(pod.container.ports)
    aliases, redirects = [], []
    for doc in docs:
        if doc["kind"] != "Service":
            continue
        selector = doc["spec"].get("selector") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        aliases.append(doc["metadata"]["name"])
        for port in doc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str) and not target.isdigit():
                if target not in ports:
                    raise Unsupported(f"Service {doc['metadata']['name']}: no port {target!r}")
                target = ports[target]
            if int(target) != port["port"]:
                redirects.append((port["port"], int(target)))
    return tuple(aliases), tuple(redirects)


def pods(docs: list[Doc], namespace: str = "default") -> list[Pod]:
    """The pods the chart's Deployments and StatefulSets would have, StatefulSets first (the
    chart's Redis, which everything else needs). Replicas as written (1 where an autoscaler owns
    the count and the field is absent)."""
    objects, links = Objects(docs), service_links(docs)
    found: list[Pod] = []
    for kind in ("StatefulSet", "Deployment"):
        for doc in (d for d in docs if d["kind"] == kind):
            owner = doc["metadata"]["name"]
            claims = {c["metadata"]["name"] for c in doc["spec"].get("volumeClaimTemplates", [])}
            for index in range(doc["spec"].get("replicas", 1)):
                name = f"{owner}-{index}"
                template = doc["spec"]["template"]
                pod = _pod(template, name, owner, kind, objects, claims, namespace, links)
                aliases, redirects = _services(docs, pod)
                if kind == "StatefulSet":  # <pod>.<serviceName>, the StatefulSet's stable name
                    aliases += (f"{name}.{doc['spec']['serviceName']}",)
                found.append(replace(pod, aliases=aliases, redirects=redirects))
    return found


def test_pods(docs: list[Doc], namespace: str = "default") -> list[Pod]:
    """The chart's `helm test` pods (hook "test")."""
    objects, links = Objects(docs), service_links(docs)
    found = []
    for doc in docs:
        hook = (doc["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
        if doc["kind"] == "Pod" and "test" in hook.split(","):
            name = doc["metadata"]["name"]
            found.append(_pod(doc, name, name, "Pod", objects, set(), namespace, links))
    return found
