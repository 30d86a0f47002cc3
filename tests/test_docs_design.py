"""docs/design.md's transformer block, run as written, against the library's TransformerEncoderLayer."""

import pathlib
import re

import numpy as np

from nptfunc import layers as L
from nptfunc import random
from nptfunc.testing import assert_close
from nptfunc.tree import tree_leaves, tree_map

DESIGN = pathlib.Path(__file__).parents[1] / "docs" / "design.md"


def test_design_transformer_block_equals_the_library_layer():
    section = DESIGN.read_text().split("### A transformer block, the way a research script writes one", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "docs/design.md", "exec"), ns)
    p0 = ns["init"](random.key(0))
    lib = L.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation="gelu", norm_first=True, dtype=np.float64)
    lib_params = L.TransformerEncoderLayerParams(p0["attn"], p0["fc1"], p0["fc2"], p0["ln1"], p0["ln2"])
    x, causal = ns["x"], ns["causal"]
    y_lib, vjp_lib = lib.apply(lib_params, x, attn_mask=causal)
    y_doc, vjp_doc = ns["block"](p0, x, causal)
    assert_close(y_doc, y_lib)
    dy = random.normal(random.key(2), x.shape)
    (d_doc, dx_doc), (d_lib, dx_lib) = vjp_doc(dy), vjp_lib(dy)
    assert_close(dx_doc, dx_lib)
    for doc_name, lib_name in [("attn", "self_attn"), ("fc1", "linear1"), ("fc2", "linear2"), ("ln1", "norm1"),
                               ("ln2", "norm2")]:
        for a, b in zip(tree_leaves(d_doc[doc_name]), tree_leaves(getattr(d_lib, lib_name)), strict=True):
            assert_close(a, b, name=doc_name)
    assert ns["params"]["fc1"].weight.shape == (32, 16)


def test_design_combinator_block_equals_the_library_layer():
    section = DESIGN.read_text().split("With the combinators the same block", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "docs/design.md", "exec"), ns)
    block = ns["block"].with_dtype(np.float64)
    params = tree_map(lambda a: a.astype(np.float64), ns["params"])
    (ln1, _, attn, _), (ln2, fc1, _, fc2) = params
    lib = L.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation="gelu", norm_first=True, dtype=np.float64)
    lib_params = L.TransformerEncoderLayerParams(attn, fc1, fc2, ln1, ln2)
    x, causal = random.normal(random.key(1), (10, 2, 16)), ns["causal"]
    y, vjp = block.apply(params, x, attn_mask=causal)  # the Sequentials hand the mask to the attention
    y_lib, vjp_lib = lib.apply(lib_params, x, attn_mask=causal)
    assert_close(y, y_lib)
    dy = random.normal(random.key(2), x.shape)
    (d, dx), (d_lib, dx_lib) = vjp(dy), vjp_lib(dy)
    assert_close(dx, dx_lib)
    (dln1, _, dattn, _), (dln2, dfc1, _, dfc2) = d
    for a, b in zip(tree_leaves((dattn, dfc1, dfc2, dln1, dln2)), tree_leaves(d_lib), strict=True):
        assert_close(a, b)
