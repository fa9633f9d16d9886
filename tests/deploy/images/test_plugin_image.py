"""The example plug-in's Dockerfile, checked statically like the service images: it must build
FROM one of our worker images (a build arg picks which), add only the plug-in, and run as the
same non-root user with the worker command."""

from __future__ import annotations

import shlex
from pathlib import Path

from tools.dockerfile_checks import ROOT, Recipe, no_syntax_directive, parse

EXAMPLE = ROOT / "examples" / "person-count"
RECIPE = Recipe("person-count", EXAMPLE / "Dockerfile", EXAMPLE, frozenset({""}))
WORKER_IMAGES = ("detector", "pose", "ensemble")


def test_builds_from_our_worker_image_and_adds_only_the_plugin():
    df = parse(RECIPE.path.read_text(), RECIPE)
    assert not no_syntax_directive(df)  # no frontend image to pull
    (stage,) = df.stages
    assert stage.base == "${BASE}"
    registry, _, rest = df.args["BASE"].rpartition("/")
    assert registry == "ghcr.io/posefleet" and rest.partition(":")[0] in WORKER_IMAGES
    for _, sources, _ in stage.copies():
        assert all((EXAMPLE / Path(s)).exists() for s in sources), sources
    (install,) = [r for r in stage.values("RUN") if "pip install" in r]
    assert "--no-deps" in shlex.split(install)  # Posefleet and NumPy stay at the base's pins
    assert stage.values("USER")[-1] == "10001:10001"
    command = shlex.split(stage.values("CMD")[-1].strip("[]").replace(",", " "))
    assert [w.strip('"') for w in command] == [
        "python", "-m", "services.cli", "worker", "person-count"
    ]  # fmt: skip
