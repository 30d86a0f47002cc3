"""The layer contract, checked for every layer of the table (see docs/design.md)."""

import numpy as np
import pytest
from layer_table import TABLE
from layer_table import copy_tree as _copy
from layer_table import run as _run

from nptfunc import random, tree
from nptfunc.testing import leaves_equal

IDS = [e[0] for e in TABLE]


@pytest.mark.parametrize(("name", "make", "shape"), TABLE, ids=IDS)
def test_contract(name, make, shape, dtype):
    layer = make(dtype)
    k_params, k_state, k_x, k_dy = random.split(random.key(0), 4)
    params = layer.init(k_params)
    state = layer.init_state(k_state)
    x = random.normal(k_x, shape, dtype=dtype)
    params0, state0, x0 = _copy(params), _copy(state), x.copy()

    # init: pure, read-only, dtype
    assert leaves_equal(params, layer.init(k_params))
    for leaf in tree.tree_leaves(params):
        assert not leaf.flags.writeable
        assert leaf.dtype == dtype

    y, vjp, new_state = _run(layer, params, x, state)
    assert y.shape == layer.output_shape(shape)
    assert y.dtype == dtype
    dy = random.normal(k_dy, y.shape, dtype=dtype)
    dy0 = dy.copy()
    dparams, dx = vjp(dy)
    dparams2, dx2 = vjp(dy)

    # gradients: structure and classes of params, dtype preserved, shape of x
    assert tree.same_structure(dparams, params)
    assert dx.shape == x.shape and dx.dtype == dtype
    for g, p in zip(tree.tree_leaves(dparams), tree.tree_leaves(params), strict=True):
        assert g.shape == p.shape and g.dtype == dtype
    assert leaves_equal((dparams, dx), (dparams2, dx2))  # vjp is repeatable

    # nothing mutated
    assert leaves_equal(params, params0)
    assert leaves_equal(state, state0)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)

    # replaying the call with the old state gives the same result
    y_again, _, new_state_again = _run(layer, params, x, state)
    np.testing.assert_array_equal(y, y_again)
    assert leaves_equal(new_state, new_state_again)

    # the long form works for every layer, and returns a stateless layer's state unchanged
    y_long, _, s_long = layer.apply(params, x, state, train=False)
    assert y_long.shape == y.shape
    if not layer.stateful:
        assert s_long is state


STATEFUL = [e for e in TABLE if e[1](np.float64).stateful]


@pytest.mark.parametrize(("name", "make", "shape"), STATEFUL, ids=[e[0] for e in STATEFUL])
def test_short_form_of_stateful_layer_is_a_type_error(name, make, shape):
    layer = make(np.float64)
    with pytest.raises(TypeError, match=r"is stateful: call apply\(params, x, state, train=True\|False\)"):
        layer.apply(layer.init(random.key(0)), np.ones(shape))


@pytest.mark.parametrize(("name", "make", "shape"), TABLE, ids=IDS)
def test_layers_are_immutable_and_hashable(name, make, shape):
    layer = make(np.float32)
    with pytest.raises(AttributeError):
        layer.dtype = np.float64
    assert make(np.float32) == layer
    hash(layer)


def _bad_shapes(shape):
    yield ()
    yield (*shape, 2)
    yield shape[1:] or (3,)
    for i in range(len(shape)):
        yield tuple(d + 1 if j == i else d for j, d in enumerate(shape))
    yield tuple(0 if j == 0 else d for j, d in enumerate(shape))


@pytest.mark.parametrize(("name", "make", "shape"), TABLE, ids=IDS)
def test_bad_input_shapes_fail_clearly_or_work(name, make, shape):
    """A wrong shape is either valid (as in torch) or a ValueError/TypeError naming the layer."""
    layer = make(np.float64)
    params, state = layer.init(random.key(0)), layer.init_state(random.key(1))
    cls = type(layer).__name__
    for bad in _bad_shapes(shape):
        x = np.ones(bad)
        try:
            y, vjp, _ = _run(layer, params, x, state)
        except (ValueError, TypeError) as e:
            assert cls in str(e), f"{bad}: {e}"
            continue
        assert y.shape == layer.output_shape(bad)
        with np.errstate(all="ignore"):
            _, dx = vjp(np.ones(y.shape))
        assert dx.shape == bad


@pytest.mark.parametrize(("name", "make", "shape"), TABLE, ids=IDS)
def test_vjp_rejects_wrong_dy_shape(name, make, shape):
    layer = make(np.float64)
    params, state = layer.init(random.key(0)), layer.init_state(random.key(1))
    y, vjp, _ = _run(layer, params, np.ones(shape), state)
    with pytest.raises(ValueError, match=r"vjp: expected dy of shape"):
        vjp(np.ones((*y.shape, 2)))
