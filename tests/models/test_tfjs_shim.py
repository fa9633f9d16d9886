from types import SimpleNamespace

import numpy as np

from services.core.models.tfjs_shim import fix_tfjs_graph, restore_numpy_aliases


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
