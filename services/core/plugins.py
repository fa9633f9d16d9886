"""Where a stage's handler class comes from: our tree, or a plug-in installed next to Posefleet.

pipelines.yaml's ``handler:`` is either ``module:Class`` — any importable class — or the name of
an entry point in the group ``posefleet.handlers``, which a normal Python package registers in
its own pyproject.toml (``[project.entry-points."posefleet.handlers"]``). Entry points are the
packaging standard's plug-in registry (importlib.metadata): installing the package is the whole
registration, and no Posefleet file changes. Whatever is named must be a ``Handler`` subclass; a
name that resolves to nothing, or to something else, stops the worker at start-up with what was
looked for and what is installed, rather than failing its first task.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from services.core.handler import Handler
from services.core.pipeline import StageSpec

GROUP = "posefleet.handlers"


class HandlerLoadError(RuntimeError):
    pass


def _import(ref: str) -> Any:
    module_name, _, attribute = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerLoadError(
            f"handler '{ref}': module '{module_name}' cannot be imported ({exc}); install the "
            "package that provides it in the same environment as Posefleet"
        ) from None
    if not hasattr(module, attribute):
        raise HandlerLoadError(f"handler '{ref}': module '{module_name}' has no '{attribute}'")
    return getattr(module, attribute)


def _entry_point(name: str) -> Any:
    found = entry_points(group=GROUP, name=name)
    if not found:
        installed = sorted(ep.name for ep in entry_points(group=GROUP))
        raise HandlerLoadError(
            f"handler '{name}' is neither 'module:Class' nor an entry point in the group "
            f"'{GROUP}' (installed: {', '.join(installed) or 'none'}); install the plug-in "
            "package that registers it"
        )
    if len(found) > 1:
        owners = sorted(f"{ep.value} ({ep.dist.name if ep.dist else '?'})" for ep in found)
        raise HandlerLoadError(f"handler '{name}' is registered more than once: {owners}")
    (point,) = found
    try:
        return point.load()
    except (ImportError, AttributeError) as exc:
        raise HandlerLoadError(
            f"handler '{name}' (entry point {point.value}) cannot be loaded: {exc}"
        ) from None


def handler_class(ref: str) -> type[Handler]:
    """The Handler subclass ``ref`` names (``module:Class`` or an entry point name)."""
    found = _import(ref) if ":" in ref else _entry_point(ref)
    if not (isinstance(found, type) and issubclass(found, Handler)):
        raise HandlerLoadError(
            f"handler '{ref}' is {found!r}, not a subclass of services.core.handler.Handler"
        )
    return found


def load_handler(stage: StageSpec) -> Handler:
    """A new instance of the stage's handler: ``module:Class`` or a plug-in's entry point."""
    return handler_class(stage.handler)()
