"""Combinators' own edge cases; their torch parity is in the parity table (rows residual-*, parallel-*,
fanout-add, add-broadcast, lambda-mul, resnet-basicblock*, inception-two-branch)."""

import attrs
import numpy as np
import pytest

from nptfunc import layers as L
from nptfunc import ops, random, tree


def test_residual_is_transparent_and_passes_need_dx():
    block = L.Residual(L.Linear(4, 4, dtype=np.float64))
    params = block.init(random.key(0))
    assert isinstance(params, L.LinearParams)  # the child's params: keys weight, bias
    x = random.normal(random.key(1), (3, 4), dtype=np.float64)
    y, vjp = block.apply(params, x)
    np.testing.assert_allclose(y, x + x @ params.weight.T + params.bias)
    dparams, dx = vjp(np.ones((3, 4)))
    np.testing.assert_allclose(dx, 1 + np.ones((3, 4)) @ params.weight)
    _, vjp_no_dx = block.apply(params, x, need_dx=False)
    dparams2, none = vjp_no_dx(np.ones((3, 4)))
    assert none is None and tree.tree_leaves(dparams2)[0].shape == (4, 4)


def test_stateful_children_keep_their_state_and_eval_returns_it():
    model = L.Parallel(L.BatchNorm1d(3, dtype=np.float64), L.Dropout(0.5))
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    x = random.normal(random.key(2), (4, 3), dtype=np.float64)
    (a, b), _, new_state = model.apply(params, x, state, train=True)
    assert new_state[0].num_batches_tracked == 1 and new_state[1] != state[1]
    _, _, same = model.apply(params, x, state, train=False)
    assert same is state
    with pytest.raises(TypeError, match=r"Parallel is stateful: call apply"):
        model.apply(params, x)


def test_parallel_sums_the_input_cotangents():
    model = L.Parallel(L.Identity(), L.Identity(), L.Tanh())
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    ys, vjp = model.apply(model.init(random.key(0)), x)
    _, dx = vjp((np.ones((2, 3)), 2 * np.ones((2, 3)), np.ones((2, 3))))
    np.testing.assert_allclose(dx, 3 + (1 - np.tanh(x) ** 2))
    _, dx_none = vjp((None, np.ones((2, 3)), None))  # an unused output's cotangent may be None
    np.testing.assert_allclose(dx_none, np.ones((2, 3)))


@pytest.mark.parametrize(("make", "exc", "match"), [
    (lambda: L.FanOut(0), ValueError, r"FanOut: expected n to be an int >= 1, got 0"),
    (lambda: L.Concatenate("1"), TypeError, r"Concatenate: expected axis to be an int, got str '1'"),
    (lambda: L.Lambda(3), TypeError, r"Lambda: expected fn to be a function"),
    (lambda: L.Residual(ops.relu), TypeError, r"'layer' must be <class 'nptfunc.layers.base.Layer'>"),
    (lambda: L.Parallel(L.ReLU(), "relu"), TypeError, r"Parallel: expected layers .* got str at position 1"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_inputs_name_the_combinator():
    with pytest.raises(TypeError, match=r"Add: expected a non-empty tuple of arrays"):
        L.Add().apply(None, np.ones(3))
    with pytest.raises(ValueError, match=r"Residual\(Linear\(in_features=4, out_features=2\)\): f must keep"):
        block = L.Residual(L.Linear(4, 2))
        block.apply(block.init(random.key(0)), np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match=r"Sequential\[1\]: Add: the inputs' shapes|Sequential\[1\]: Add"):
        model = L.Sequential(L.Parallel(L.Linear(4, 3), L.Linear(4, 2)), L.Add())
        model.apply(model.init(random.key(0)), np.ones((2, 4), np.float32))


def test_lambda_spreads_a_tuple_and_keeps_hyperparameters():
    lam = L.Lambda(ops.permute, {"axes": (1, 0)})
    assert lam == L.Lambda(ops.permute, {"axes": (1, 0)}) and hash(lam) == hash(L.Lambda(ops.permute, {"axes": (1, 0)}))
    y, vjp = lam.apply(None, np.arange(6.0).reshape(2, 3))
    assert y.shape == (3, 2) and lam.output_shape((2, 3)) == (3, 2)
    assert vjp(np.ones((3, 2)))[1].shape == (2, 3)
    y, vjp = L.Lambda(ops.mul).apply(None, (np.full(2, 2.0), np.full(2, 3.0)))
    _, (da, db) = vjp(np.ones(2))
    np.testing.assert_allclose(da, 3.0) and np.testing.assert_allclose(db, 2.0)


@attrs.frozen
class _Spy(L.Layer):
    """Identity that records the ``need_dx`` its hook receives (for the Sequential test below)."""

    seen: list = attrs.field(factory=list, eq=False)

    def _apply(self, params: None, x: np.ndarray, *, need_dx: bool = True) -> tuple:
        self.seen.append(need_dx)
        return x, lambda dy: (None, dy if need_dx else None)


@pytest.mark.parametrize("stateful", [False, True])
def test_need_dx_false_passes_through_leading_children_without_params(stateful):
    spy_first, spy_before_linear = _Spy(), _Spy()
    lead = (spy_first, L.Flatten(), L.Dropout(0.5)) if stateful else (spy_first, L.Flatten())
    model = L.Sequential(*lead, spy_before_linear, L.Linear(12, 5, dtype=np.float64), L.ReLU(),
                         L.Linear(5, 3, dtype=np.float64))
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    x = random.normal(random.key(2), (4, 3, 4), dtype=np.float64)
    dy = random.normal(random.key(3), (4, 3), dtype=np.float64)
    full = model.apply(params, x, state, train=True) if stateful else model.apply(params, x)
    part = (model.apply(params, x, state, train=True, need_dx=False) if stateful
            else model.apply(params, x, need_dx=False))
    np.testing.assert_array_equal(full[0], part[0])
    (g_full, dx), (g_part, no_dx) = full[1](dy), part[1](dy)
    assert dx.shape == x.shape and no_dx is None
    # the Linear after the parameterless lead is told that nothing needs its dx; the spy before it
    # (params None) too, and the children after it are asked for dx as usual
    assert spy_first.seen == [True, False] and spy_before_linear.seen == [True, False]
    for a, b in zip(tree.tree_leaves(g_full), tree.tree_leaves(g_part), strict=True):
        np.testing.assert_array_equal(a, b)
    assert g_part[:len(lead) + 1] == (None,) * (len(lead) + 1)


# ------------------------------------------------------------ extras (masks) passed on to the children
def _block(dropout=0.0, dtype=np.float64):
    return L.TransformerEncoderLayer(8, 2, 16, dropout=dropout, norm_first=True, batch_first=True, dtype=dtype)


def test_a_combinator_accepts_the_extras_of_its_children():
    assert L.Linear(2, 3).apply_extras == frozenset()  # need_dx is apply's own flag, not an extra
    assert _block().apply_extras == {"attn_mask", "key_padding_mask", "is_causal"}
    nested = L.Sequential(L.Linear(8, 8), L.Residual(L.Sequential(L.Parallel(_block(), L.Identity()), L.Add())))
    assert nested.apply_extras == _block().apply_extras
    mha = L.Sequential(L.FanOut(3), L.MultiheadAttention(8, 2))
    assert {"need_weights", "attn_mask"} <= mha.apply_extras
    assert L.Sequential(L.ReLU(), L.Tanh()).apply_extras == frozenset()
    assert L.Sequential().apply_extras == frozenset()


@pytest.mark.parametrize("make", [lambda: L.Sequential(_block(), L.LayerNorm(8)), lambda: L.Residual(_block()),
                                  lambda: L.Parallel(_block(), L.Linear(8, 8)), lambda: L.Sequential(L.ReLU())])
def test_an_extra_no_child_accepts_is_a_type_error_naming_the_combinator(make):
    model = make()
    params = model.init(random.key(0))
    x = np.zeros((2, 3, 8))
    name = type(model).__name__
    with pytest.raises(TypeError, match=rf"^{name}\b.*apply: got an unexpected keyword argument 'src_mask'"):
        model.apply(params, x, src_mask=np.zeros((3, 3), bool))


def test_a_childs_error_about_an_extra_names_its_position():
    model = L.Sequential(L.LayerNorm(8), _block())
    params = model.init(random.key(0))
    with pytest.raises(ValueError, match=r"^Sequential\[1\]: TransformerEncoderLayer.*attn_mask"):
        model.apply(params, np.zeros((2, 3, 8)), attn_mask=np.zeros((5, 5), bool))


def test_stateful_children_get_their_state_and_the_extras():
    """Dropout blocks inside a Sequential with a mask: the same output, new state and grads as by hand."""
    children = (_block(0.3), L.Dropout(0.2), _block(0.3), L.LayerNorm(8, dtype=np.float64))
    model = L.Sequential(*children)
    assert model.stateful
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    x = random.normal(random.key(2), (2, 4, 8), dtype=np.float64)
    mask = np.triu(np.ones((4, 4), bool), 1)
    y, vjp, new_state = model.apply(params, x, state, train=True, attn_mask=mask, is_causal=True)
    h, vjps, states = x, [], []
    for layer, p, s in zip(children, params, state, strict=True):
        kw = {"attn_mask": mask, "is_causal": True} if isinstance(layer, L.TransformerEncoderLayer) else {}
        h, v, s = layer.apply(p, h, s, train=True, **kw)
        vjps.append(v)
        states.append(s)
    np.testing.assert_array_equal(y, h)
    assert new_state == tuple(states) and new_state != state  # every dropout key moved on
    dy = random.normal(random.key(3), y.shape, dtype=np.float64)
    grads, dx = vjp(dy)
    d, by_hand = dy, []
    for v in reversed(vjps):
        g, d = v(d)
        by_hand.append(g)
    for a, b in zip(tree.tree_leaves((grads, dx)), tree.tree_leaves((tuple(reversed(by_hand)), d)), strict=True):
        np.testing.assert_array_equal(a, b)
    _, _, same = model.apply(params, x, state, train=False, attn_mask=mask, is_causal=True)
    assert same is state
