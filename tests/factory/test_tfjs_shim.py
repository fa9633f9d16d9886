import copy
from types import SimpleNamespace

import numpy as np

from services.factory.builder.tfjs_shim import (
    HASH_SEED,
    fix_tfjs_graph,
    hash_nodes_by_creation_order,
    pinned_hash_seed_env,
    restore_numpy_aliases,
)


def test_numpy_aliases_are_restored_only_where_missing():
    fake = SimpleNamespace(prod=np.prod, product="kept")
    added = restore_numpy_aliases(fake)
    assert added == ["object", "bool"]
    assert fake.product == "kept" and fake.object is object and fake.bool is bool


def test_numpy2_gets_product_back():
    module = SimpleNamespace(prod=np.prod)
    restore_numpy_aliases(module)
    assert module.product([2, 3, 4]) == 24


def graph(*nodes):
    return {"modelTopology": {"node": list(nodes)}}


def test_fused_conv_gets_targs_of_its_own_type_per_extra_input():
    conv = {"op": "_FusedConv2D", "attr": {"T": {"type": "DT_FLOAT"}, "num_args": {"i": "2"}}}
    counts = fix_tfjs_graph(graph(conv))
    assert conv["attr"]["TArgs"] == {"list": {"type": ["DT_FLOAT", "DT_FLOAT"]}}
    assert counts == {"fused_conv_targs": 1, "topk_index_type": 0}


def test_topk_gets_int32_index_type_and_existing_attrs_are_kept():
    topk = {"op": "TopKV2", "attr": {"T": {"type": "DT_FLOAT"}}}
    done = {"op": "_FusedConv2D", "attr": {"T": {"type": "DT_HALF"}, "TArgs": {"list": {}}}}
    other = {"op": "FusedDepthwiseConv2dNative", "attr": {"T": {"type": "DT_FLOAT"}}}
    counts = fix_tfjs_graph(graph(topk, done, other))
    assert topk["attr"]["index_type"] == {"type": "DT_INT32"}
    assert done["attr"]["TArgs"] == {"list": {}}
    assert "TArgs" not in other["attr"]  # its TF op definition has no such attribute
    assert counts == {"fused_conv_targs": 0, "topk_index_type": 1}


def _node_class() -> type:
    class Node:  # stands in for tf2onnx.graph.Node: identity equality, id()-based hash
        def __init__(self, name: str) -> None:
            self.name = name

    hash_nodes_by_creation_order(Node)
    return Node


def _set_order(node_class: type, spacers: int) -> list[str]:
    """Build the same nodes with different heap layouts in between, as two runs would."""
    nodes, keep = [], []
    for i in range(200):
        keep.append([object() for _ in range(spacers * (i % 3))])
        nodes.append(node_class(f"n{i}"))
    return [n.name for n in set(nodes)]


def test_node_set_order_follows_creation_not_memory_addresses():
    first, second = _set_order(_node_class(), 0), _set_order(_node_class(), 7)
    assert first == second and sorted(first) == sorted(f"n{i}" for i in range(200))


def test_node_hash_survives_deepcopy_and_equality_stays_identity():
    node_class = _node_class()
    a, b = node_class("a"), node_class("b")
    clone = copy.deepcopy(a)
    assert hash(clone) == hash(a) != hash(b)
    assert clone != a and len({a, clone}) == 2


def test_converter_restarts_once_with_the_hash_seed_pinned():
    for salted in ({}, {"PYTHONHASHSEED": "random"}, {"PYTHONHASHSEED": "1"}):
        env = pinned_hash_seed_env({"PATH": "/bin", **salted})
        assert env == {"PATH": "/bin", "PYTHONHASHSEED": HASH_SEED}
        assert pinned_hash_seed_env(env) is None  # the restarted converter runs, no loop
