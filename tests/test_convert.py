"""nptfunc.convert: the one torch-to-NumPy converter, checked state-dict values, load_state_dict's checks."""

import numpy as np
import pytest

from nptfunc import convert, layers, nn, random, testing
from nptfunc.nn import _parameter

torch = pytest.importorskip("torch")


def _model(dtype=np.float32):
    return nn.Sequential(nn.Linear(4, 3, dtype=dtype), nn.BatchNorm1d(3, dtype=dtype), key=0)


def _torch_model():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    with torch.no_grad():
        tm[1].running_mean.uniform_(-1, 1)
        tm[1].running_var.uniform_(0.5, 2)
        tm[1].num_batches_tracked.fill_(7)
    return tm


# ------------------------------------------------------------------ one converter
def test_one_converter_serves_the_facade_and_the_testing_kit():
    assert _parameter._to_array is convert.to_numpy
    assert testing.to_numpy is convert.to_numpy


@pytest.mark.parametrize(("tdtype", "expected"), [
    (torch.float32, np.float32), (torch.float64, np.float64), (torch.float16, np.float16),
    (torch.bfloat16, np.float32), (torch.float8_e4m3fn, np.float32), (torch.int64, np.int64),
    (torch.bool, np.bool_), (torch.complex64, np.complex64),
])
def test_to_numpy_keeps_every_value_exactly(tdtype, expected):
    t = torch.tensor([[0.5, -1.25], [3.0, 0.0]]).to(tdtype)
    a = convert.to_numpy(t)
    assert a.dtype == expected and a.shape == (2, 2)
    assert torch.equal(torch.from_numpy(np.ascontiguousarray(a)).to(tdtype), t)


def test_to_numpy_detaches_and_resolves_views():
    p = torch.nn.Parameter(torch.arange(3.0))
    assert np.array_equal(convert.to_numpy(p * 2), [0.0, 2.0, 4.0])
    c = torch.tensor([1 + 2j]).conj()  # a lazily conjugated view
    assert convert.to_numpy(c)[0] == 1 - 2j
    assert np.array_equal(convert.to_numpy([1, 2]), [1, 2])
    a = np.ones(2)
    assert convert.to_numpy(a) is a


class _FacadeLikeTensor:
    """Not a torch tensor, though it has torch's method names: converted through ``__array__``."""

    def detach(self):
        raise AssertionError("to_numpy treated a non-torch object as a torch tensor")

    def numpy(self):
        raise AssertionError("to_numpy treated a non-torch object as a torch tensor")

    def __array__(self, dtype=None, copy=None):
        return np.arange(3.0, dtype=dtype)


def test_to_numpy_tells_torch_tensors_by_their_module():
    assert np.array_equal(convert.to_numpy(_FacadeLikeTensor()), [0.0, 1.0, 2.0])
    assert np.array_equal(convert.checked_value("w", _FacadeLikeTensor(), np.zeros(3, np.float32)), [0, 1, 2])


# ------------------------------------------------------------------ checked values
LIKE = np.zeros((2, 3), np.float32)


@pytest.mark.parametrize(("value", "error", "match"), [
    (None, TypeError, r"^w: expected an array of float32 \(or numbers castable to it\) of shape \(2, 3\), got None$"),
    ("abc", TypeError, r"^w: expected an array of float32 .*, got str 'abc'$"),
    ([[1.0, 2.0, None], [1.0, 2.0, 3.0]], TypeError,
     r"^w: expected .*, got an object array \(None or other non-numbers among the values\)$"),
    (np.array([["a", "b", "c"]] * 2), TypeError, r"^w: expected .*, got values of dtype <U1$"),
    (np.ones((2, 3), complex), TypeError, r"^w: expected .*, got values of dtype complex128$"),
    (np.zeros((2, 3), "M8[s]"), TypeError, r"got values of dtype datetime64\[s\]$"),
    ([[1.0], [1.0, 2.0]], TypeError, r"^w: expected .*, got a list that is not an array: .*inhomogeneous"),
    (np.ones((3, 2)), ValueError, r"^size mismatch for w: copying a param with shape \(3, 2\) from checkpoint, "
                                  r"the shape in current model is \(2, 3\)$"),
    (np.ones(6), ValueError, r"size mismatch for w"),
    (torch.ones(2, 3, dtype=torch.complex64), TypeError, r"got values of dtype complex64"),
])
def test_checked_value_refuses_what_copy_would_refuse_or_mangle(value, error, match):
    with pytest.raises(error, match=match):
        convert.checked_value("w", value, LIKE)


def test_checked_value_refuses_floats_for_an_integer_entry():
    with pytest.raises(TypeError, match=r"^n: expected an array of int64 .* of shape \(\), got values of dtype "
                                        r"float64$"):
        convert.checked_value("n", 2.0, np.array(0, np.int64))
    assert convert.checked_value("n", np.uint8(3), np.array(0, np.int64)).dtype == np.int64


@pytest.mark.parametrize("tdtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int32,
                                    torch.bool])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_checked_value_casts_as_torch_copy(tdtype, dtype):
    src = (torch.randn(2, 3, generator=torch.Generator().manual_seed(0)) * 3).to(tdtype)
    dst = torch.zeros(2, 3, dtype=torch.float32 if dtype == np.float32 else torch.float64)
    dst.copy_(src)
    out = convert.checked_value("w", src, np.zeros((2, 3), dtype))
    assert out.dtype == dtype and np.array_equal(out, dst.numpy())


def test_checked_value_copies_and_overflows_to_inf_as_torch():
    a = np.array([1.0, 1e300, -1e300])
    out = convert.checked_value("w", a, np.zeros(3, np.float32))
    expected = torch.zeros(3).copy_(torch.from_numpy(a)).numpy()
    assert np.array_equal(out, expected) and np.isinf(out[1:]).all()
    b = np.ones(3, np.float32)
    assert not np.shares_memory(convert.checked_value("w", b, b), b)


# ------------------------------------------------------------------ load_state_dict
@pytest.mark.parametrize("tdtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_state_dict_casts_low_precision_tensors_as_torch(tdtype, dtype):
    sd = _torch_model().to(tdtype).state_dict()
    model = _model(dtype)
    assert model.load_state_dict(sd) == nn.IncompatibleKeys([], [])
    reference = _torch_model().to(torch.float32 if dtype == np.float32 else torch.float64)
    reference.load_state_dict(sd)  # torch's copy_ from the low-precision tensors
    for k, v in reference.state_dict().items():
        ours = model.state_dict()[k]
        assert ours.dtype == v.numpy().dtype and np.array_equal(ours, v.numpy()), k


@pytest.mark.parametrize(("key", "value", "match"), [
    ("0.bias", None, r"0\.bias: expected an array of float32 .* of shape \(3,\), got None"),
    ("0.bias", [1.0, 2.0, None], r"0\.bias: expected .*, got an object array"),
    ("1.weight", np.array(["a", "b", "c"]), r"1\.weight: expected .*, got values of dtype <U1"),
    ("1.running_var", np.ones(3, complex), r"1\.running_var: expected .*, got values of dtype complex128"),
    ("1.num_batches_tracked", 2.5, r"1\.num_batches_tracked: expected an array of int64 .*, got values of dtype "
                                   r"float64"),
    ("0.weight", "weights.npy", r"0\.weight: expected .*, got str 'weights\.npy'"),
])
def test_load_state_dict_names_the_key_and_assigns_nothing(key, value, match):
    model = _model()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    sd = {k: v + 1 for k, v in before.items()}
    sd[key] = value
    with pytest.raises(ValueError, match=r"Error\(s\) in loading state_dict for Sequential:\n\t" + match):
        model.load_state_dict(sd)
    for k, v in model.state_dict().items():  # every value checked before anything was assigned
        assert np.array_equal(v, before[k]) and v.dtype == before[k].dtype, k


def test_load_state_dict_lists_every_bad_key():
    model = _model()
    sd = dict(model.state_dict())
    sd.update({"0.bias": None, "1.weight": np.ones(4), "1.bias": [1.0, None, 2.0]})
    with pytest.raises(ValueError) as info:
        model.load_state_dict(sd)
    lines = str(info.value).split("\n\t")[1:]
    assert [line.split(":")[0] for line in lines] == ["0.bias", "size mismatch for 1.weight", "1.bias"]


def test_load_state_dict_does_not_keep_the_callers_arrays():
    model = _model()
    sd = {k: v.copy() for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    sd["0.weight"][...] = 42.0
    assert not (model.state_dict()["0.weight"] == 42.0).any()


# ------------------------------------------------------------------ the functional helpers
def test_tree_from_state_dict_uses_the_same_checks():
    core = layers.Sequential(layers.Linear(4, 3), layers.BatchNorm1d(3))
    params = core.init(random.key(0))
    sd = _torch_model().to(torch.bfloat16).state_dict()
    p = convert.tree_from_state_dict(sd, params)
    assert p[0].weight.dtype == np.float32
    assert np.array_equal(p[0].weight, sd["0.weight"].float().numpy())
    with pytest.raises(TypeError, match=r"tree_from_state_dict: 0\.bias: expected .*, got an object array"):
        convert.tree_from_state_dict({**sd, "0.bias": [1.0, None, 2.0]}, params)
    with pytest.raises(TypeError, match=r"tree_from_state_dict: expected strict to be a bool \(True or False\), "
                                        r"got str 'yes'"):
        convert.tree_from_state_dict(sd, params, strict="yes")


def test_state_dict_from_torch_converts_bfloat16_and_names_bad_values():
    sd = convert.state_dict_from_torch(_torch_model().to(torch.bfloat16).state_dict())
    assert sd["0.weight"].dtype == np.float32 and sd["1.num_batches_tracked"].dtype == np.int64
    with pytest.raises(TypeError, match=r"state_dict_from_torch: w: expected numbers, got None$"):
        convert.state_dict_from_torch({"w": None})
    with pytest.raises(TypeError, match=r"state_dict_to_torch: w: expected numbers, got list of dtype object"):
        convert.state_dict_to_torch({"w": [1.0, None]})
