"""The import arrows of docs/architecture.md, enforced: stages → core; gateway, control, cli and
the factory → core; never back. Lazy imports inside functions count too."""

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[1] / "services"
STAGES = ("detector", "pose", "multipose", "ensemble")
# package -> the packages it may import (besides itself); None: anything of ours.
ALLOWED: dict[str, tuple[str, ...] | None] = {
    "services.pins": (),
    "services.core": ("services.pins",),
    **{f"services.{s}": ("services.core", "services.pins") for s in STAGES},
    "services.factory.builder": (),
    "services.factory": ("services.core", "services.pins"),
    "services.control": ("services.core", "services.pins"),
    # The gateway enqueues batches on the control plane and reads their state.
    "services.gateway": ("services.core", "services.pins", "services.control"),
    "services.cli": None,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SERVICES.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def owner(module: str) -> str:
    """The most specific layer a module belongs to."""
    return max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len)


def our_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m for m in found if m == "services" or m.startswith("services.")}


MODULES = sorted(SERVICES.rglob("*.py"))


def test_every_module_has_a_layer():
    assert MODULES, "no modules found"
    for path in MODULES:
        if path.parent != SERVICES:  # services/__init__.py itself holds nothing
            assert owner(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SERVICES)))
def test_imports_point_one_way(path: Path):
    if path.parent == SERVICES and path.name == "__init__.py":
        return
    layer = owner(module_name(path))
    allowed = ALLOWED[layer]
    if allowed is None:
        return
    wrong = sorted(
        m
        for m in our_imports(path)
        if owner(m) != layer and not any(m == a or m.startswith(a + ".") for a in allowed)
    )
    assert not wrong, f"{layer} may import only {allowed}, but {path.name} imports {wrong}"
