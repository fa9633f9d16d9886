"""The image recipes under images/, held to what a reviewer would insist on, without building
them: each is parsed with a real parser (dockerfile-parse). `make images` builds the cpu
targets; the gpu and neuron targets need registry bases this machine cannot reach, so for them
these checks are what there is.

    python -m tools.dockerfile_checks        # prints every problem; exit 1 if there is one
"""

from __future__ import annotations

import fnmatch
import importlib.util
import io
import json
import re
import shlex
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from dockerfile_parse import DockerfileParser

from services.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
WORKER_TARGETS = frozenset({"cpu", "gpu", "neuron"})
# What a runtime image must never do: build or download models, or reach for npm.
FETCHES = re.compile(
    r"posefleet models build|\bnpm\b|\bnpx\b|pip download|\bwget\b|\bcurl\b|huggingface|hf_hub"
)
PIN = re.compile(r"([A-Za-z0-9_.\[\]-]+)==\d")
OCI_LABELS = ("title", "description", "version", "source", "licenses")
# A parser directive naming a frontend image: BuildKit would pull it, and no registry answers.
SYNTAX = re.compile(r"^#\s*syntax\s*=", re.I | re.M)
# The worker CMD names no stage: `worker` takes it from POSEFLEET_STAGE, set from the STAGE arg.
WORKER_CMD = ["python", "-m", "services.cli", "worker"]
# The last instruction of the dependency layers every service image shares.
PROJECT_INSTALL = "pip install --no-cache-dir --no-deps ."


@dataclass(frozen=True)
class Recipe:
    """One recipe: where it is, what its COPY sources are relative to, its runtime targets."""

    name: str  # gateway | worker | models | redis
    path: Path
    context: Path | None  # None: a folder staged at build time (the models image)
    targets: frozenset[str]  # runtime stages; "" is the last, unnamed one


RECIPES = {
    "gateway": Recipe("gateway", IMAGES / "gateway.Dockerfile", ROOT, frozenset({"cpu"})),
    "worker": Recipe("worker", IMAGES / "worker.Dockerfile", ROOT, WORKER_TARGETS),
    "models": Recipe("models", IMAGES / "models.Dockerfile", None, frozenset({""})),
    "redis": Recipe("redis", IMAGES / "redis" / "Dockerfile", IMAGES / "redis", frozenset({""})),
}
SERVICES = ("gateway", "worker")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]

    def pairs(self, instruction: str) -> dict[str, str]:
        """ENV / LABEL / ARG key=value pairs, later ones winning, as Docker applies them."""
        found: dict[str, str] = {}
        for value in self.values(instruction):
            for token in shlex.split(value):
                key, _, val = token.partition("=")
                found[key] = val
        return found

    def copies(self) -> list[tuple[dict[str, str], list[str], str]]:
        """Each COPY/ADD as (flags, sources, destination)."""
        found = []
        for value in self.values("COPY") + self.values("ADD"):
            words = json.loads(value) if value.startswith("[") else shlex.split(value)
            flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
            paths = [w for w in words if not w.startswith("--")]
            found.append((flags, paths[:-1], paths[-1]))
        return found


@dataclass
class Dockerfile:
    recipe: Recipe
    text: str
    args: dict[str, str | None]  # global ARGs; None = no default (a required build arg)
    stages: list[Stage]

    def runtime(self) -> list[Stage]:
        last = self.stages[-1:] if "" in self.recipe.targets else []
        return [s for s in self.stages if s.name in self.recipe.targets] + last

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)


def parse(text: str, recipe: Recipe) -> Dockerfile:
    # An in-memory file object: given a path instead, the parser would write to it.
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            words = re.split(r"\s+as\s+", value, flags=re.I, maxsplit=1)
            base, name = words[0].strip(), (words[1].strip() if len(words) > 1 else "")
            stages.append(Stage(name, base))
        elif instruction == "ARG" and not stages:
            key, equals, default = value.partition("=")
            args[key] = default.strip('"') if equals else None
        elif stages and instruction != "COMMENT":
            stages[-1].instructions.append((instruction, value))
    return Dockerfile(recipe, text, args, stages)


@cache
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def dockerignored(path: str) -> bool:
    """Docker's rule for a top-level path: the last .dockerignore pattern that matches decides."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").removeprefix("**/")
        if fnmatch.fnmatchcase(path, pattern):
            ignored = not negated
    return ignored


# ---- the checks: each takes a parsed Dockerfile and returns what is wrong with it ----


def no_syntax_directive(df: Dockerfile) -> list[str]:
    return ["a `# syntax=` directive pulls a frontend image"] if SYNTAX.search(df.text) else []


def pinned_bases(df: Dockerfile) -> list[str]:
    """Every base is pinned by tag or digest; a base from a build arg without a default is an
    input the builder must give (the worker's MODELS_IMAGE), not an unpinned one."""
    names = {s.name for s in df.stages}
    found = []
    for stage in df.stages:
        required = re.fullmatch(r"\$\{?(\w+)\}?", stage.base)
        if stage.base in names or stage.base == "scratch":
            continue
        if required and required[1] in df.args and df.args[required[1]] is None:
            continue
        base = re.sub(r"\$\{?(\w+)\}?", lambda m: df.args.get(m[1]) or m[0], stage.base)
        tag = base.rsplit("/", 1)[-1].partition(":")[2]
        if "$" in base or ("@sha256:" not in base and tag in ("", "latest")):
            found.append(f"stage {stage.name}: base image {base!r} is not pinned by tag or digest")
    return found


def expected_targets(df: Dockerfile) -> list[str]:
    missing = df.recipe.targets - {s.name for s in df.stages} - {""}
    return [f"missing targets {sorted(missing)}"] if missing else []


def non_root_user(df: Dockerfile) -> list[str]:
    if df.recipe.name == "models":
        return []  # FROM scratch: files only, nothing runs
    found = []
    for stage in df.runtime():
        users = stage.values("USER")
        user = users[-1] if users else "root (no USER)"
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or int(uid) == 0 or (gid and not gid.isdigit()):
            found.append(f"target {stage.name}: must end as a non-root numeric USER, not {user}")
    return found


def copy_sources(df: Dockerfile) -> list[str]:
    found = []
    for index, stage in enumerate(df.stages):
        earlier = {s.name for s in df.stages[:index]}
        for flags, sources, destination in stage.copies():
            if "from" in flags:
                if flags["from"] not in earlier:
                    found.append(f"stage {stage.name}: COPY --from={flags['from']} is no stage")
                continue
            if df.recipe.context is None:  # the staged model repository, whole, to /models
                if sources != ["."] or destination.rstrip("/") != "/models":
                    found.append("the models image copies its context, whole, to /models")
                continue
            for source in sources:
                path = Path(source).as_posix()
                if re.match(r"https?://", source):
                    found.append(f"stage {stage.name}: ADD fetches {source}")
                elif path == ".":
                    found.append(f"stage {stage.name}: copies the whole context; name the paths")
                elif not (df.recipe.context / path).exists():
                    found.append(f"stage {stage.name}: COPY source {source} does not exist")
                elif df.recipe.context == ROOT and dockerignored(path.split("/")[0]):
                    found.append(
                        f"stage {stage.name}: COPY source {source} is excluded by .dockerignore"
                    )
    return found


def no_model_fetching(df: Dockerfile) -> list[str]:
    return [
        f"target {stage.name}: fetches or builds models at image build: {run[:70]}"
        for stage in df.runtime()
        for run in stage.values("RUN")
        if FETCHES.search(run)
    ]


def models_from_models_image(df: Dockerfile) -> list[str]:
    """Workers take the model repository, and only it, from the models image named by the
    MODELS_IMAGE build arg; the gateway takes none."""
    if df.recipe.name not in SERVICES:
        return []
    found = []
    models = df.stage("models")
    if df.recipe.name == "worker":
        if models is None or models.base not in ("${MODELS_IMAGE}", "$MODELS_IMAGE"):
            found.append("no `models` stage FROM ${MODELS_IMAGE}")
        elif models.instructions:
            found.append("the models stage must only name the models image")
    for stage in df.runtime():
        if stage.base == "models":
            found.append(f"target {stage.name}: builds on the models stage")
        from_models = [(src, dst) for f, src, dst in stage.copies() if f.get("from") == "models"]
        if any(src != ["/models"] for src, _ in from_models):
            found.append(f"target {stage.name}: copies more than /models from the models stage")
        if df.recipe.name == "worker" and not from_models:
            found.append(f"target {stage.name}: does not copy the model repository")
    return found


def required_args(df: Dockerfile) -> list[str]:
    """The worker recipe is every service's: a build without SERVICE or STAGE must fail, not
    make an image titled "posefleet-" that runs no stage."""
    if df.recipe.name != "worker":
        return []
    found = []
    for stage in df.runtime():
        declared = {v.partition("=")[0] for v in stage.values("ARG")}
        guarded = any('test -n "${SERVICE}"' in r and 'test -n "${STAGE}"' in r
                      for r in stage.values("RUN"))  # fmt: skip
        if not {"SERVICE", "STAGE"} <= declared or not guarded:
            found.append(f"target {stage.name}: must declare and require SERVICE and STAGE")
    return found


def command(df: Dockerfile) -> list[str]:
    if df.recipe.name not in SERVICES:
        return []
    found = []
    for stage in df.runtime():
        # Base images bring entrypoints (NVIDIA's banner script, the Neuron image's TorchServe
        # launcher); clearing them makes the CMD the whole command, as the chart's is.
        if stage.values("ENTRYPOINT")[-1:] != ["[]"]:
            found.append(f"target {stage.name}: must clear the base image's ENTRYPOINT with []")
        cmd = stage.values("CMD")
        if not cmd or not cmd[-1].startswith("["):
            found.append(f"target {stage.name}: needs an exec-form CMD")
            continue
        argv = json.loads(cmd[-1])
        if len(argv) < 3 or argv[:2] != ["python", "-m"] or not importlib.util.find_spec(argv[2]):
            found.append(f"target {stage.name}: CMD runs no importable module: {argv}")
        elif df.recipe.name == "gateway" and argv[2:] != ["services.gateway"]:
            found.append(f"target {stage.name}: CMD {argv} does not run the gateway")
        elif df.recipe.name == "worker" and (
            argv != WORKER_CMD or stage.pairs("ENV").get("POSEFLEET_STAGE") != "${STAGE}"
        ):
            found.append(f"target {stage.name}: CMD must be {WORKER_CMD} with POSEFLEET_STAGE")
    return found


def ports_and_paths(df: Dockerfile) -> list[str]:
    if df.recipe.name not in SERVICES:
        return []
    found = []
    for stage in df.runtime():
        env = stage.pairs("ENV")
        if df.recipe.name == "gateway":  # HTTP on PORT, V2 gRPC on GRPC_PORT
            main = (ROOT / "services" / "gateway" / "__main__.py").read_text()
            ports = [
                re.search(rf'environ\.get\("{name}", "(\d+)"\)', main)[1]
                for name in ("PORT", "GRPC_PORT")
            ]
            for name, default in zip(("PORT", "GRPC_PORT"), ports, strict=True):
                if env.get(name) != default:
                    found.append(
                        f"target {stage.name}: {name}={env.get(name)}, the gateway's is {default}"
                    )
            port = " ".join(ports)
        else:
            port = str(Settings.model_fields["metrics_port"].default)
            model_root = [dst for f, _, dst in stage.copies() if f.get("from") == "models"]
            if env.get("POSEFLEET_MODEL_ROOT") not in model_root:
                found.append(f"target {stage.name}: POSEFLEET_MODEL_ROOT is not where /models goes")
        if stage.values("EXPOSE") != [port]:
            found.append(f"target {stage.name}: EXPOSE {stage.values('EXPOSE')}, expected {port}")
        for key in ("HOME", "TMPDIR", "POSEFLEET_CACHE_DIR"):
            if not env.get(key, "").startswith("/tmp"):
                found.append(
                    f"target {stage.name}: {key} must be under /tmp (the only writable path)"
                )
        workdir = (stage.values("WORKDIR") or ["/"])[-1]
        if env.get("POSEFLEET_PIPELINES_FILE") != f"{workdir}/pipelines.yaml" or not any(
            "pipelines.yaml" in src and dst in ("./", f"{workdir}/")
            for _, src, dst in stage.copies()
        ):
            found.append(f"target {stage.name}: POSEFLEET_PIPELINES_FILE names no copied file")
    return found


def oci_labels(df: Dockerfile) -> list[str]:
    if df.recipe.name == "redis":
        return []  # a test fixture's image, not a release artefact
    found = []
    versions = {df.args.get("VERSION")} | {
        v.partition("=")[2] for s in df.stages for v in s.values("ARG") if v.startswith("VERSION=")
    }
    if pyproject()["version"] not in versions:
        found.append(f"ARG VERSION={df.args.get('VERSION')} is not pyproject's version")
    title = {"gateway": "posefleet-gateway", "worker": "posefleet-${SERVICE}"}
    for stage in df.runtime():
        labels = stage.pairs("LABEL")
        missing = [k for k in OCI_LABELS if f"org.opencontainers.image.{k}" not in labels]
        if missing:
            found.append(f"target {stage.name}: missing OCI label(s) {missing}")
        elif (
            labels["org.opencontainers.image.title"]
            != title.get(df.recipe.name, f"posefleet-{df.recipe.name}")
            or labels["org.opencontainers.image.licenses"] != pyproject()["license"]
        ):
            found.append(f"target {stage.name}: OCI title/licenses label is wrong")
    return found


def no_python_pins(df: Dockerfile) -> list[str]:
    """Versions live in pyproject.toml; images install `.` and its extras, never a second list."""
    return [
        f"stage {stage.name}: pins {sorted(set(PIN.findall(run)))} outside pyproject.toml"
        for stage in df.stages
        for run in stage.values("RUN")
        if PIN.search(run)
    ]


CHECKS: tuple[Callable[[Dockerfile], list[str]], ...] = (
    no_syntax_directive,
    pinned_bases,
    expected_targets,
    non_root_user,
    copy_sources,
    no_model_fetching,
    models_from_models_image,
    required_args,
    command,
    ports_and_paths,
    oci_labels,
    no_python_pins,
)


def problems(text: str, recipe: str) -> list[str]:
    """Everything wrong with one recipe; empty means it passes."""
    df = parse(text, RECIPES[recipe])
    return [problem for check in CHECKS for problem in check(df)]


def dependency_layers(text: str) -> list[tuple[str, str]]:
    """The cpu target's instructions up to and including the project install."""
    cpu = parse(text, RECIPES["gateway"]).stage("cpu")
    instructions = cpu.instructions if cpu else []
    end = next((i for i, (k, v) in enumerate(instructions) if PROJECT_INSTALL in v), None)
    return instructions[: end + 1] if end is not None else []


def shared_dependency_layers(gateway: str, worker: str) -> list[str]:
    """The gateway's and the workers' cpu targets must be the same instructions up to the
    project install, so one build installs the dependencies once (the layer cache is shared)."""
    layers = dependency_layers(gateway)
    if not layers or layers != dependency_layers(worker):
        return ["gateway and worker cpu targets differ before the project install"]
    return []


def all_problems() -> list[str]:
    found = [
        f"{recipe.path.relative_to(ROOT)}: {problem}"
        for name, recipe in RECIPES.items()
        for problem in problems(recipe.path.read_text(), name)
    ]
    gateway, worker = (RECIPES[n].path.read_text() for n in ("gateway", "worker"))
    return found + shared_dependency_layers(gateway, worker)


if __name__ == "__main__":
    found = all_problems()
    print("\n".join(found) or f"{len(RECIPES)} recipes: no problems")
    sys.exit(1 if found else 0)
