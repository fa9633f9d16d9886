"""Compatibility fixes that let tf2onnx 1.17 convert tfjs graph models under TensorFlow 2.21 and
NumPy 2, reproducibly. Pure Python on purpose: it runs in the builder venv and is unit-tested
without TF.

1. tf2onnx's tfjs reader calls ``np.product``, ``np.object`` and ``np.bool``, which NumPy 2
   removed; we restore them as aliases of their surviving equivalents, only where missing.
2. tf2onnx infers each node's output shapes by importing it into a throw-away TF graph. TF 2.21's
   ``_FusedConv2D`` op definition has a ``TArgs`` attribute (the types of the fused extra inputs)
   that graphs exported by older tfjs converters lack, so the import fails. Every extra input of
   a fused conv has the node's own type ``T``, so ``TArgs = [T] * num_args`` is exact.
3. Likewise TF 2.21's ``TopKV2`` requires ``index_type``, absent from older graphs; the old
   behaviour it replaces is int32 indices.
4. tf2onnx's transpose optimiser iterates a ``set`` of graph nodes, and nodes hash by ``id()`` —
   their memory address — so the order of its rewrites changes from run to run, and with it
   which of several equal constants survives deduplication, how generated nodes are numbered
   and the final node order: the same inputs gave a different ONNX sha256 on every run. Hashing a
   node by its creation order instead makes the output byte-identical, so the catalog can pin it.
   Equality stays identity, so the hash remains consistent with it.
5. tf2onnx keeps each tensor's consumers as a ``set`` of node NAMES, and iterates it when it
   rewires and rewrites; string hashes are salted per process, so on a graph with shared
   consumers (MoveNet MultiPose's dynamic-size decoder) the rewrite order, node numbering and
   bytes changed with the salt even with patch 4. The salt can only be fixed before the
   interpreter starts, so the converter restarts itself once with ``PYTHONHASHSEED`` pinned.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from types import ModuleType
from typing import Any

_NUMPY_ALIASES = (("product", "prod"), ("object", None), ("bool", None))
HASH_SEED = "0"


def restore_numpy_aliases(np: ModuleType) -> list[str]:
    """Returns the names it had to add (empty on NumPy 1.x)."""
    added = []
    builtins = {"object": object, "bool": bool}
    for alias, target in _NUMPY_ALIASES:
        if alias not in vars(np):
            setattr(np, alias, getattr(np, target) if target else builtins[alias])
            added.append(alias)
    return added


def fix_tfjs_graph(model: dict[str, Any]) -> dict[str, int]:
    """Add the attributes TF 2.21 requires to a tfjs model.json in place; returns fix counts."""
    counts = {"fused_conv_targs": 0, "topk_index_type": 0}
    for node in model["modelTopology"]["node"]:
        attr = node.setdefault("attr", {})
        if node["op"] == "_FusedConv2D" and "TArgs" not in attr:
            num_args = int(attr.get("num_args", {}).get("i", "0"))
            attr["TArgs"] = {"list": {"type": [attr["T"]["type"]] * num_args}}
            counts["fused_conv_targs"] += 1
        elif node["op"] == "TopKV2" and "index_type" not in attr:
            attr["index_type"] = {"type": "DT_INT32"}
            counts["topk_index_type"] += 1
    return counts


def hash_nodes_by_creation_order(node_class: type) -> None:
    """Patch 4, applied to ``tf2onnx.graph.Node``. Copies (tf2onnx deep-copies the graph before
    each optimiser) keep their original's number, which ``deepcopy`` carries over."""
    counter = itertools.count()
    original_init = node_class.__init__

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        self._creation_order = next(counter)
        original_init(self, *args, **kwargs)

    def _creation_order_hash(self: Any) -> int:
        return self._creation_order

    node_class.__init__ = __init__  # type: ignore[misc]
    node_class.__hash__ = _creation_order_hash  # type: ignore[method-assign,assignment]


def pinned_hash_seed_env(environ: Mapping[str, str]) -> dict[str, str] | None:
    """Patch 5: the environment to restart the converter in, or None when the salt is already
    pinned (so the restart happens exactly once)."""
    if environ.get("PYTHONHASHSEED") == HASH_SEED:
        return None
    return {**environ, "PYTHONHASHSEED": HASH_SEED}
