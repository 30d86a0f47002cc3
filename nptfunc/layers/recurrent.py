"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and their cells, with backpropagation through time.

Layout. The cells' params are attrs classes with torch's names (``weight_ih``,
``weight_hh``, ``bias_ih``, ``bias_hh``). The multi-layer layers' params are a
plain ``dict`` keyed by torch's ``state_dict`` names (``weight_ih_l0``,
``weight_hh_l1_reverse``, ``weight_hr_l0`` with ``proj_size``): torch names its
parameters flat per layer and direction, so one attrs class would need a field set
that depends on ``num_layers``, ``bidirectional``, ``bias`` and ``proj_size`` (a
class made at run time per configuration, which pickles and compares badly). A dict
is a tree node of :mod:`nptfunc.tree` (sorted keys), so tree paths are exactly
torch's keys, :mod:`nptfunc.convert` and :mod:`nptfunc.io` work both ways, and the
optimizers see ordinary leaves. The arrays :meth:`init` returns are read-only; the
layer checks a params dict's keys and shapes on entry.

Gates (torch's order and formulas): an LSTM's ``4 * hidden_size`` rows are
``i, f, g, o``; a GRU's ``3 * hidden_size`` rows are ``r, z, n`` with
``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` (``b_hn`` inside the reset
product) and ``h' = (1 - z) * n + z * h``.

Computation. Per layer and direction the input projection ``x @ W_ih.T + b_ih`` of
all time steps is one matmul; the loop over time steps does only ``h @ W_hh.T`` and
the gates' elementwise math on the whole batch, keeping each step's gates. The vjp
is backpropagation through time: one loop backwards over the steps giving the
gradients of the gates' pre-activations, then ``dW_ih``, ``dW_hh``, the biases and
``dx`` each in one matmul (or sum) over all steps. The only Python loops are over
layers, directions and time steps.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import numpy as np

from nptfunc import random
from nptfunc._types import VJP, Array
from nptfunc.backend import array_module, blas_threads, matmul, readonly
from nptfunc.layers.base import (
    Layer,
    bool_field,
    choice_field,
    dtype_field,
    int_field,
    param_field,
    probability_field,
)
from nptfunc.layers.dropout import DropoutState, _advance
from nptfunc.random import Key

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "RNNCellParams",
]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ------------------------------------------------------------------ the step math
def _sigmoid_(a: Array) -> Array:
    """``1 / (1 + exp(-a))`` (torch's formula) computed in place in ``a``; returns ``a``."""
    np.negative(a, out=a)
    with np.errstate(over="ignore"):
        np.exp(a, out=a)
    a += 1
    return np.reciprocal(a, out=a)


class _Scan:
    """One layer and direction over a whole sequence: the forward loop and its BPTT.

    ``xw`` (T, N, G*H) is the input projection with ``b_ih`` (and, except for the
    GRU, ``b_hh``) added; ``forward`` runs the steps in time order (or backwards for
    the reverse direction) and keeps what ``backward`` needs.
    """

    def __init__(self, mode: str, hidden: int, w_hh: Array, b_hh: Array | None, w_hr: Array | None,
                 reverse: bool) -> None:
        self.mode, self.H, self.reverse = mode, hidden, reverse
        self.w_hh, self.b_hh, self.w_hr = w_hh, b_hh, w_hr

    def forward(self, xw: Array, h0: Array, c0: Array | None) -> tuple[Array, Array, Array | None]:
        mode, H, w_hh = self.mode, self.H, self.w_hh
        T, N = xw.shape[:2]
        h_out = h0.shape[-1]
        dt = xw.dtype
        out = np.empty((T, N, h_out), dt)
        self.gates = np.empty(xw.shape, dt)  # post-activation gates per step
        self.h_prev = np.empty((T, N, h_out), dt)
        if mode == "LSTM":
            self.c_prev = np.empty((T, N, H), dt)
            self.tanh_c = np.empty((T, N, H), dt)
            if self.w_hr is not None:
                self.m = np.empty((T, N, H), dt)
        elif mode == "GRU":
            self.gh_n = np.empty((T, N, H), dt)
        w_hh_t = w_hh.T
        h, c = h0, c0
        for t in (range(T - 1, -1, -1) if self.reverse else range(T)):
            self.h_prev[t] = h
            a = self.gates[t]
            if mode == "GRU":
                gh = matmul(h, w_hh_t)
                if self.b_hh is not None:
                    gh += self.b_hh
                a[:] = xw[t]
                a[:, :2 * H] += gh[:, :2 * H]
                _sigmoid_(a[:, :2 * H])
                r, z = a[:, :H], a[:, H:2 * H]
                self.gh_n[t] = gh[:, 2 * H:]
                n = a[:, 2 * H:]
                n += r * gh[:, 2 * H:]
                np.tanh(n, out=n)
                h = n + z * (h - n)  # (1 - z) * n + z * h
            else:
                matmul(h, w_hh_t, out=a)
                a += xw[t]
                if mode == "LSTM":
                    _sigmoid_(a[:, :2 * H])
                    np.tanh(a[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
                    _sigmoid_(a[:, 3 * H:])
                    i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
                    self.c_prev[t] = c
                    c = f * c + i * g
                    tc = np.tanh(c, out=self.tanh_c[t])
                    h = o * tc
                    if self.w_hr is not None:
                        self.m[t] = h
                        h = matmul(h, self.w_hr.T)
                elif mode == "RNN_TANH":  # h is this step's gates, never written again
                    h = np.tanh(a, out=a)
                else:
                    h = np.maximum(a, 0, out=a)
            out[t] = h
        return out, h, c

    def backward(self, dout: Array | None, dh_n: Array, dc_n: Array | None
                 ) -> tuple[Array, Array, Array, Array | None, Array | None]:
        """``(da_ih, da_hh, dh0, dc0, dw_hr)``: the gradients of the input and hidden projections."""
        mode, H = self.mode, self.H
        T = self.gates.shape[0]
        da = np.empty_like(self.gates)  # gradient of the input projection (xw)
        da_hh = np.empty_like(self.gates) if mode == "GRU" else da
        dm = (np.empty((*self.m.shape[:2], self.w_hr.shape[0]), self.m.dtype)
              if mode == "LSTM" and self.w_hr is not None else None)
        dh, dc = dh_n, dc_n
        for t in (range(T) if self.reverse else range(T - 1, -1, -1)):
            if dout is not None:
                dh = dh + dout[t]
            a, d = self.gates[t], da[t]
            if mode == "LSTM":
                i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
                if dm is not None:
                    dm[t] = dh
                    dh = matmul(dh, self.w_hr)
                tc = self.tanh_c[t]
                dc = dc + dh * o * (1 - tc * tc)
                d[:, 3 * H:] = dh * tc * o * (1 - o)
                d[:, :H] = dc * g * i * (1 - i)
                d[:, H:2 * H] = dc * self.c_prev[t] * f * (1 - f)
                d[:, 2 * H:3 * H] = dc * i * (1 - g * g)
                dc = dc * f
                dh = matmul(d, self.w_hh)
            elif mode == "GRU":
                r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
                hp = self.h_prev[t]
                dn = dh * (1 - z) * (1 - n * n)
                d[:, 2 * H:] = dn
                d[:, :H] = dn * self.gh_n[t] * r * (1 - r)
                d[:, H:2 * H] = dh * (hp - n) * z * (1 - z)
                dhh = da_hh[t]
                dhh[:, :2 * H] = d[:, :2 * H]
                dhh[:, 2 * H:] = dn * r
                dh = dh * z + matmul(dhh, self.w_hh)
            else:
                if mode == "RNN_TANH":
                    np.multiply(dh, 1 - a * a, out=d)
                else:
                    np.multiply(dh, a > 0, out=d)
                dh = matmul(d, self.w_hh)
        dw_hr = None
        if dm is not None:
            dw_hr = matmul(dm.reshape(-1, dm.shape[-1]).T, self.m.reshape(-1, H))
        return da, da_hh, dh, dc, dw_hr


def _direction(mode: str, hidden: int, inp: Array, w_ih: Array, b_ih: Array | None, w_hh: Array,
               b_hh: Array | None, w_hr: Array | None, h0: Array, c0: Array | None,
               reverse: bool) -> tuple[Array, Array, Array | None, Any]:
    """One layer and direction: ``(output (T, N, H_out), h_n, c_n, back)``.

    ``back(dout, dh_n, dc_n, need_dx) -> (dinp, dw_ih, db_ih, dw_hh, db_hh, dw_hr, dh0, dc0)``;
    ``dout`` may be ``None`` (no gradient through the per-step outputs).
    """
    # BLAS's own threads for the whole layer: T short products in a row gain nothing from the
    # pool's hand-offs, and OpenBLAS runs the (T*N)-deep weight-gradient products faster itself
    with blas_threads():
        T, N, n_in = inp.shape
        x2 = inp.reshape(-1, n_in)
        xw = matmul(x2, w_ih.T)  # every time step's input projection in one matmul
        if b_ih is not None:
            xw += b_ih
        if b_hh is not None and mode != "GRU":
            xw += b_hh
        scan = _Scan(mode, hidden, w_hh, b_hh, w_hr, reverse)
        out, h_n, c_n = scan.forward(xw.reshape(T, N, w_ih.shape[0]), h0, c0)

    def back(dout: Array | None, dh_n: Array, dc_n: Array | None, need_dx: bool) -> tuple[Any, ...]:
        with blas_threads():
            da, da_hh, dh0, dc0, dw_hr = scan.backward(dout, dh_n, dc_n)
            gh = da.shape[-1]
            da2, dhh2 = da.reshape(-1, gh), da_hh.reshape(-1, gh)
            dw_ih = matmul(da2.T, x2)
            dw_hh = matmul(dhh2.T, scan.h_prev.reshape(-1, h0.shape[-1]))
            db_ih = da2.sum(axis=0) if b_ih is not None else None
            db_hh = dhh2.sum(axis=0) if b_hh is not None else None
            dinp = matmul(da2, w_ih).reshape(inp.shape) if need_dx else None
        return dinp, dw_ih, db_ih, dw_hh, db_hh, dw_hr, dh0, dc0

    return out, h_n, c_n, back


# ------------------------------------------------------------------ x, hx and their shapes
def _shape_tree(x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(_shape_tree(a) for a in x)
    return None if x is None else tuple(np.shape(x))


def _is_shape(s: Any) -> bool:
    return isinstance(s, tuple) and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                        for d in s)


def _split_x(x: Any, lstm: bool, leaf: Any = _is_shape) -> tuple[Any, Any, Any, str]:
    """``(input, h0, c0, structure)`` from ``x = input | (input,) | (input, None) | (input, hx)``.

    ``hx`` is ``h0``, or ``(h0, c0)`` for an LSTM (torch's forms). Works on arrays and
    on trees of shapes (``leaf`` tells a leaf from a node).
    """
    if leaf(x):
        return x, None, None, "array"
    if not isinstance(x, tuple) or len(x) not in (1, 2):
        msg = "expected x = input or (input, hx)" + (" with hx = (h0, c0)" if lstm else "")
        raise TypeError(f"{msg}, got {type(x).__name__} of length {len(x) if isinstance(x, tuple) else '-'}")
    if len(x) == 1:
        return x[0], None, None, "one"
    inp, hx = x
    if hx is None:
        return inp, None, None, "none"
    if lstm:
        if not (isinstance(hx, tuple) and len(hx) == 2 and not leaf(hx)):
            msg = f"expected hx = (h0, c0), got {type(hx).__name__}"
            raise TypeError(msg)
        return inp, hx[0], hx[1], "pair"
    if not leaf(hx):
        msg = f"expected hx to be one array h0, got {type(hx).__name__}"
        raise TypeError(msg)
    return inp, hx, None, "h"


def _join_dx(structure: str, dinp: Any, dh0: Any, dc0: Any) -> Any:
    """``dx`` in the structure of ``x``."""
    return {"array": lambda: dinp, "one": lambda: (dinp,), "none": lambda: (dinp, None),
            "pair": lambda: (dinp, (dh0, dc0)), "h": lambda: (dinp, dh0)}[structure]()


def _check_hidden(h_shape: Any, c_shape: Any, want_h: tuple[int, ...], want_c: tuple[int, ...]) -> None:
    for what, got, want in (("h0", h_shape, want_h), ("c0", c_shape, want_c)):
        if got is not None and tuple(got) != want:
            msg = f"expected {what} of shape {want}, got {tuple(got)}"
            raise ValueError(msg)


# ------------------------------------------------------------------ cells
@attrs.frozen
class RNNCellParams:
    """Parameters of :class:`RNNCell`, :class:`LSTMCell` and :class:`GRUCell` (torch's names).

    Attributes:
        weight_ih: ``(G * hidden_size, input_size)``; G = 1 (RNN), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n).
        weight_hh: ``(G * hidden_size, hidden_size)``.
        bias_ih: ``(G * hidden_size,)`` or ``None``.
        bias_hh: ``(G * hidden_size,)`` or ``None``.
    """

    weight_ih: Array = param_field()
    weight_hh: Array = param_field()
    bias_ih: Array | None = param_field(default=None)
    bias_hh: Array | None = param_field(default=None)


def _uniform_params(key: Key, shapes: dict[str, tuple[int, ...]], hidden: int,
                    dtype: np.dtype) -> dict[str, Array]:
    """torch's init of every recurrent parameter: ``U(-1/sqrt(hidden), 1/sqrt(hidden))``."""
    bound = 1.0 / math.sqrt(hidden)
    keys = random.split(key, max(len(shapes), 1))
    return {name: readonly(random.uniform(k, shape, -bound, bound, dtype=dtype))
            for k, (name, shape) in zip(keys, shapes.items(), strict=False)}


class _CellMixin:
    """The math shared by the three cells: one step of the recurrence (T = 1)."""

    _mode: ClassVar[str]
    params_class = RNNCellParams

    @property
    def _lstm(self) -> bool:
        return self._mode == "LSTM"

    def output_shape(self: Any, input_shape: Any) -> Any:
        """``(N, input_size) -> (N, hidden_size)`` (``(h, c)``, both so, for the LSTM); or unbatched."""
        shape, h, c, _ = _split_x(input_shape, self._lstm)
        if len(shape) not in (1, 2) or shape[-1] != self.input_size:
            msg = (f"{self.name}: expected input of shape (N, {self.input_size}) or ({self.input_size},), "
                   f"got {tuple(shape)}")
            raise ValueError(msg)
        out = (*shape[:-1], self.hidden_size)
        try:
            _check_hidden(h, c, out, out)
        except ValueError as e:
            msg = f"{self.name}: {e} (input of shape {tuple(shape)})"
            raise ValueError(msg) from e
        return (out, out) if self._lstm else out

    def init(self: Any, key: Key) -> RNNCellParams:
        """torch's default: every parameter ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))``."""
        gh = _GATES[self._mode] * self.hidden_size
        shapes = {"weight_ih": (gh, self.input_size), "weight_hh": (gh, self.hidden_size)}
        if self.bias:
            shapes.update(bias_ih=(gh,), bias_hh=(gh,))
        return RNNCellParams(**_uniform_params(key, shapes, self.hidden_size, self.dtype))

    def _apply(self: Any, params: RNNCellParams, x: Any, *, need_dx: bool = True) -> tuple[Any, VJP]:
        lstm, H = self._lstm, self.hidden_size
        inp, h0, c0, structure = _split_x(x, lstm, leaf=lambda a: not isinstance(a, tuple) and a is not None)
        out_shape = self.output_shape(_shape_tree(x))
        out_shape = out_shape[0] if lstm else out_shape
        xp = array_module(inp)
        N = inp.shape[0] if inp.ndim == 2 else 1
        h = xp.zeros((N, H), inp.dtype) if h0 is None else h0.reshape(N, H)
        c = (xp.zeros((N, H), inp.dtype) if c0 is None else c0.reshape(N, H)) if lstm else None
        _, h_n, c_n, back = _direction(self._mode, H, inp.reshape(1, N, self.input_size), params.weight_ih,
                                       params.bias_ih, params.weight_hh, params.bias_hh, None, h, c, False)
        y = (h_n.reshape(out_shape), c_n.reshape(out_shape)) if lstm else h_n.reshape(out_shape)

        def vjp(dy: Any) -> tuple[RNNCellParams, Any]:
            dh, dc = (dy[0].reshape(N, H), dy[1].reshape(N, H)) if lstm else (dy.reshape(N, H), None)
            dinp, dw_ih, db_ih, dw_hh, db_hh, _, dh0, dc0 = back(None, dh, dc, need_dx)
            dparams = RNNCellParams(dw_ih, dw_hh, db_ih, db_hh)
            if not need_dx:
                return dparams, None
            return dparams, _join_dx(structure, dinp.reshape(inp.shape),
                                     None if h0 is None else dh0.reshape(h0.shape),
                                     None if c0 is None else dc0.reshape(c0.shape))

        return y, vjp


@attrs.frozen
class RNNCell(_CellMixin, Layer):
    """One step of an Elman RNN: ``h' = act(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)``.

    Equivalent to ``torch.nn.RNNCell`` (parameters, their names and init).

    Args:
        input_size: features of the input.
        hidden_size: features of the hidden state.
        bias: whether to learn ``bias_ih`` and ``bias_hh``.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        dtype: NumPy float dtype of the parameters.

    Shapes:
        x: ``input (N, input_size)`` or ``(input, h) `` with ``h (N, hidden_size)``
        (``h`` zeros when omitted or ``None``); unbatched ``(input_size,)`` and
        ``(hidden_size,)`` -> y: ``h' (N, hidden_size)`` (or ``(hidden_size,)``).
    """

    input_size: int = int_field(minimum=0)
    hidden_size: int = int_field(minimum=1)
    bias: bool = bool_field(default=True)
    nonlinearity: str = choice_field(("tanh", "relu"), default="tanh")
    dtype: np.dtype = dtype_field()

    @property
    def _mode(self) -> str:  # type: ignore[override]
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"


@attrs.frozen
class LSTMCell(_CellMixin, Layer):
    """One step of an LSTM: gates ``i, f, g, o``; ``c' = f * c + i * g``, ``h' = o * tanh(c')``.

    Equivalent to ``torch.nn.LSTMCell`` (parameters, their names, gate order and init).

    Args:
        input_size: features of the input.
        hidden_size: features of the hidden and cell states.
        bias: whether to learn ``bias_ih`` and ``bias_hh``.
        dtype: NumPy float dtype of the parameters.

    Shapes:
        x: ``input (N, input_size)`` or ``(input, (h, c))``, ``h, c (N, hidden_size)``
        (zeros when omitted or ``None``); unbatched without the ``N`` axis ->
        y: ``(h', c')``, each ``(N, hidden_size)`` (or ``(hidden_size,)``).
    """

    _mode: ClassVar[str] = "LSTM"
    input_size: int = int_field(minimum=0)
    hidden_size: int = int_field(minimum=1)
    bias: bool = bool_field(default=True)
    dtype: np.dtype = dtype_field()


@attrs.frozen
class GRUCell(_CellMixin, Layer):
    """One step of a GRU: gates ``r, z, n``; ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``.

    ``h' = (1 - z) * n + z * h``. Equivalent to ``torch.nn.GRUCell`` (parameters,
    their names, gate order and init).

    Args:
        input_size: features of the input.
        hidden_size: features of the hidden state.
        bias: whether to learn ``bias_ih`` and ``bias_hh``.
        dtype: NumPy float dtype of the parameters.

    Shapes:
        x: ``input (N, input_size)`` or ``(input, h)``, ``h (N, hidden_size)`` (zeros
        when omitted or ``None``); unbatched without the ``N`` axis -> y: ``h'
        (N, hidden_size)`` (or ``(hidden_size,)``).
    """

    _mode: ClassVar[str] = "GRU"
    input_size: int = int_field(minimum=0)
    hidden_size: int = int_field(minimum=1)
    bias: bool = bool_field(default=True)
    dtype: np.dtype = dtype_field()


# ------------------------------------------------------------------ multi-layer
class _StackMixin:
    """The math shared by :class:`RNN`, :class:`LSTM` and :class:`GRU`: layers and directions over time."""

    params_class = dict
    state_class = DropoutState
    _mode: ClassVar[str]
    proj_size: ClassVar[int] = 0

    @property
    def stateful(self: Any) -> bool:
        """Stateful (a :class:`DropoutState`) only with dropout between layers."""
        return self.dropout > 0

    @property
    def _lstm(self) -> bool:
        return self._mode == "LSTM"

    @property
    def _dirs(self: Any) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _h_out(self: Any) -> int:
        return self.proj_size or self.hidden_size

    def _check_proj(self: Any) -> None:
        if self.proj_size >= self.hidden_size:
            msg = (f"{type(self).__name__}: expected proj_size smaller than hidden_size={self.hidden_size}, "
                   f"got {self.proj_size}")
            raise ValueError(msg)

    def param_shapes(self: Any) -> dict[str, tuple[int, ...]]:
        """torch's parameter names and shapes, in torch's order."""
        gh, h_out = _GATES[self._mode] * self.hidden_size, self._h_out
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            n_in = self.input_size if layer == 0 else self._dirs * h_out
            for d in range(self._dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes[f"weight_ih{sfx}"] = (gh, n_in)
                shapes[f"weight_hh{sfx}"] = (gh, h_out)
                if self.bias:
                    shapes[f"bias_ih{sfx}"] = (gh,)
                    shapes[f"bias_hh{sfx}"] = (gh,)
                if self.proj_size:
                    shapes[f"weight_hr{sfx}"] = (self.proj_size, self.hidden_size)
        return shapes

    def init(self: Any, key: Key) -> dict[str, Array]:
        """torch's default: every parameter ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))``.

        A dict keyed by torch's ``state_dict`` names (see the module docstring).
        """
        return _uniform_params(key, self.param_shapes(), self.hidden_size, self.dtype)

    def init_state(self: Any, key: Key) -> DropoutState | None:
        """A :class:`DropoutState` holding ``key`` when ``dropout > 0``, else ``None``."""
        return DropoutState(key) if self.dropout > 0 else None

    def output_shape(self: Any, input_shape: Any) -> Any:
        """``((T, N, H_in), hx) -> ((T, N, D * H_out), h_n)``; see the class docstring for the layouts."""
        shape, h, c, _ = _split_x(input_shape, self._lstm)
        shape = tuple(shape)
        lay = "(N, L, H_in)" if self.batch_first else "(L, N, H_in)"
        if len(shape) not in (2, 3) or shape[-1] != self.input_size:
            msg = (f"{self.name}: expected input of shape {lay.replace('H_in', str(self.input_size))} or "
                   f"(L, {self.input_size}), got {shape}")
            raise ValueError(msg)
        n_states = self.num_layers * self._dirs
        if len(shape) == 3:
            T, N = (shape[1], shape[0]) if self.batch_first else shape[:2]
            lead = (n_states, N)
            out = (N, T) if self.batch_first else (T, N)
        else:
            lead, out = (n_states,), shape[:1]
        if out[-1 if self.batch_first and len(shape) == 3 else 0] == 0:
            msg = f"{self.name}: expected a sequence of length > 0 (as torch), got input of shape {shape}"
            raise ValueError(msg)
        want_h, want_c = (*lead, self._h_out), (*lead, self.hidden_size)
        try:
            _check_hidden(h, c, want_h, want_c)
        except ValueError as e:
            msg = f"{self.name}: {e} (input of shape {shape})"
            raise ValueError(msg) from e
        y = (*out, self._dirs * self._h_out)
        return (y, (want_h, want_c)) if self._lstm else (y, want_h)

    def _check_params(self: Any, params: dict[str, Any]) -> None:
        shapes = self.param_shapes()
        if set(params) != set(shapes):
            missing, extra = sorted(set(shapes) - set(params)), sorted(set(params) - set(shapes))
            msg = f"expected params with torch's keys; missing {missing}, unexpected {extra}"
            raise ValueError(msg)
        for name, shape in shapes.items():
            if tuple(np.shape(params[name])) != shape:
                msg = f"expected params[{name!r}] of shape {shape}, got {tuple(np.shape(params[name]))}"
                raise ValueError(msg)

    def _apply(self: Any, params: dict[str, Array], x: Any, *, need_dx: bool = True) -> tuple[Any, VJP]:
        return self._run(params, x, None, False, need_dx)[:2]

    def _apply_stateful(self: Any, params: dict[str, Array], x: Any, state: DropoutState, train: bool, *,
                        need_dx: bool = True) -> tuple[Any, VJP, DropoutState]:
        return self._run(params, x, state, train, need_dx)

    def _noise(self: Any, state: DropoutState | None, train: bool, shape: tuple[int, ...],
               dtype: np.dtype) -> tuple[list[Array] | None, DropoutState | None]:
        """The dropout multipliers after each layer but the last, and the new state."""
        if state is None or not train:
            return None, state
        k_mask, k_next = _advance(state.key)
        p, n = self.dropout, self.num_layers - 1
        if p == 1:
            noise = [np.zeros(shape, dtype) for _ in range(n)]
        else:
            noise = [random.bernoulli(k, 1 - p, shape).astype(dtype) / dtype.type(1 - p)
                     for k in random.split(k_mask, max(n, 1))[:n]]
        return noise, DropoutState(k_next)

    def _run(self: Any, params: dict[str, Array], x: Any, state: DropoutState | None, train: bool,
             need_dx: bool) -> tuple[Any, VJP, Any]:
        lstm, H, D, L, h_out = self._lstm, self.hidden_size, self._dirs, self.num_layers, self._h_out
        self._check_params(params)
        inp, h0, c0, structure = _split_x(x, lstm, leaf=lambda a: not isinstance(a, tuple) and a is not None)
        y_shape, hx_shape = self.output_shape(_shape_tree(x))
        h_shape, c_shape = hx_shape if lstm else (hx_shape, None)
        xp = array_module(inp)
        batched = inp.ndim == 3
        seq = (inp.transpose(1, 0, 2) if self.batch_first else inp) if batched else inp[:, None]
        T, N = seq.shape[:2]
        h = xp.zeros((L * D, N, h_out), seq.dtype) if h0 is None else h0.reshape(L * D, N, h_out)
        c = (xp.zeros((L * D, N, H), seq.dtype) if c0 is None else c0.reshape(L * D, N, H)) if lstm else None
        noise, new_state = self._noise(state, train, (T, N, D * h_out), seq.dtype)
        h_n = xp.empty_like(h)
        c_n = xp.empty_like(c) if lstm else None
        backs = []
        layer_in = seq
        for layer in range(L):
            outs = []
            for d in range(D):
                k, sfx = layer * D + d, f"_l{layer}" + ("_reverse" if d else "")
                out, h_n[k], ck, back = _direction(
                    self._mode, H, layer_in, params[f"weight_ih{sfx}"], params.get(f"bias_ih{sfx}"),
                    params[f"weight_hh{sfx}"], params.get(f"bias_hh{sfx}"), params.get(f"weight_hr{sfx}"),
                    h[k], None if c is None else c[k], bool(d))
                if lstm:
                    c_n[k] = ck
                outs.append(out)
                backs.append(back)
            layer_in = outs[0] if D == 1 else xp.concatenate(outs, axis=-1)
            if noise is not None and layer < L - 1:
                layer_in = layer_in * noise[layer]
        output = layer_in.reshape(y_shape) if not batched else (
            layer_in.transpose(1, 0, 2) if self.batch_first else layer_in)
        y = (output, (h_n.reshape(h_shape), c_n.reshape(c_shape))) if lstm else (output, h_n.reshape(h_shape))

        def vjp(dy: Any) -> tuple[dict[str, Array], Any]:
            dout, dhx = dy
            dh_n, dc_n = dhx if lstm else (dhx, None)
            g = (dout.transpose(1, 0, 2) if self.batch_first else dout) if batched else dout[:, None]
            dh_n = dh_n.reshape(L * D, N, h_out)
            dc_n = dc_n.reshape(L * D, N, H) if lstm else None
            dparams: dict[str, Array] = {}
            dh0 = xp.empty_like(h)
            dc0 = xp.empty_like(c) if lstm else None
            for layer in reversed(range(L)):
                if noise is not None and layer < L - 1:
                    g = g * noise[layer]
                d_in = None
                for d in range(D):
                    k, sfx = layer * D + d, f"_l{layer}" + ("_reverse" if d else "")
                    gd = g if D == 1 else g[..., d * h_out:(d + 1) * h_out]
                    dinp, dw_ih, db_ih, dw_hh, db_hh, dw_hr, dh0[k], dck = backs[k](
                        gd, dh_n[k], None if dc_n is None else dc_n[k], need_dx or layer > 0)
                    if lstm:
                        dc0[k] = dck
                    for name, grad in (("weight_ih", dw_ih), ("weight_hh", dw_hh), ("bias_ih", db_ih),
                                       ("bias_hh", db_hh), ("weight_hr", dw_hr)):
                        if grad is not None:
                            dparams[f"{name}{sfx}"] = grad
                    d_in = dinp if d_in is None else d_in + dinp
                g = d_in
            if not need_dx:
                return dparams, None
            dinp = g.reshape(inp.shape) if not batched else (g.transpose(1, 0, 2) if self.batch_first else g)
            return dparams, _join_dx(structure, dinp, None if h0 is None else dh0.reshape(h0.shape),
                                     None if c0 is None else dc0.reshape(c0.shape))

        return y, vjp, new_state


@attrs.frozen
class RNN(_StackMixin, Layer):
    """A multi-layer Elman RNN: ``h_t = act(x_t @ W_ih.T + b_ih + h_{t-1} @ W_hh.T + b_hh)``.

    Equivalent to ``torch.nn.RNN`` (parameters, their names, init, layouts).

    Shapes:
        x: ``input (L, N, H_in)`` (``(N, L, H_in)`` with batch_first, ``(L, H_in)``
        unbatched) or ``(input, h0)`` with ``h0 (num_layers * D, N, H)`` (``(num_layers
        * D, H)`` unbatched; zeros when omitted or ``None``) -> y: ``(output, h_n)``,
        ``output (L, N, D * H)`` (in the input's layout), ``h_n`` like ``h0``.

    Args:
        input_size: features of the input ``H_in``.
        hidden_size: features of the hidden state ``H``.
        num_layers: stacked layers; layer ``k > 0`` takes layer ``k - 1``'s output.
        bias: whether to learn ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
        batch_first: input and output as ``(N, L, ...)`` instead of ``(L, N, ...)``
            (the hidden states keep ``(num_layers * D, N, H)``).
        dropout: dropout probability on each layer's output but the last's, in
            training. With ``dropout > 0`` the layer is stateful (a
            :class:`DropoutState` key, as :class:`nptfunc.layers.Dropout`).
        bidirectional: add a reverse direction (``D = 2``); outputs concatenate
            ``[forward, reverse]`` features and state ``k * D + d`` is layer ``k``,
            direction ``d``.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        dtype: NumPy float dtype of the parameters.

    Params:
        a ``dict`` keyed by torch's names: ``weight_ih_l{k}``, ``weight_hh_l{k}``,
        ``bias_ih_l{k}``, ``bias_hh_l{k}`` (``weight_hr_l{k}`` with proj_size), and
        the same with ``_reverse`` for the reverse direction.
    """

    input_size: int = int_field(minimum=1)
    hidden_size: int = int_field(minimum=1)
    num_layers: int = int_field(default=1, minimum=1)
    nonlinearity: str = choice_field(("tanh", "relu"), default="tanh")
    bias: bool = bool_field(default=True)
    batch_first: bool = bool_field(default=False)
    dropout: float = probability_field(default=0.0)
    bidirectional: bool = bool_field(default=False)
    dtype: np.dtype = dtype_field()

    @property
    def _mode(self) -> str:  # type: ignore[override]
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"


@attrs.frozen
class LSTM(_StackMixin, Layer):
    """A multi-layer LSTM (gates ``i, f, g, o``), optionally with projections (``proj_size``).

    Equivalent to ``torch.nn.LSTM`` (parameters, their names, gate order, init,
    layouts). With ``proj_size = P > 0`` each step's ``h = (o * tanh(c)) @ W_hr.T``
    has ``P`` features (outputs and ``h0``/``h_n`` use ``P``; ``c`` keeps ``H``).

    Shapes:
        x: ``input (L, N, H_in)`` (``(N, L, H_in)`` with batch_first, ``(L, H_in)``
        unbatched) or ``(input, (h0, c0))`` with ``h0 (num_layers * D, N, H_out)``,
        ``c0 (num_layers * D, N, H)`` (no ``N`` unbatched; zeros when omitted or
        ``None``), ``H_out = proj_size or H`` -> y: ``(output, (h_n, c_n))``,
        ``output (L, N, D * H_out)`` in the input's layout.

    Args:
        input_size: features of the input ``H_in``.
        hidden_size: features of the hidden state ``H``.
        num_layers: stacked layers; layer ``k > 0`` takes layer ``k - 1``'s output.
        bias: whether to learn ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
        batch_first: input and output as ``(N, L, ...)`` instead of ``(L, N, ...)``
            (the hidden states keep ``(num_layers * D, N, H)``).
        dropout: dropout probability on each layer's output but the last's, in
            training. With ``dropout > 0`` the layer is stateful (a
            :class:`DropoutState` key, as :class:`nptfunc.layers.Dropout`).
        bidirectional: add a reverse direction (``D = 2``); outputs concatenate
            ``[forward, reverse]`` features and state ``k * D + d`` is layer ``k``,
            direction ``d``.
        proj_size: features of the projected ``h`` (0: no projection).
        dtype: NumPy float dtype of the parameters.

    Params:
        a ``dict`` keyed by torch's names: ``weight_ih_l{k}``, ``weight_hh_l{k}``,
        ``bias_ih_l{k}``, ``bias_hh_l{k}`` (``weight_hr_l{k}`` with proj_size), and
        the same with ``_reverse`` for the reverse direction.
    """

    input_size: int = int_field(minimum=1)
    hidden_size: int = int_field(minimum=1)
    num_layers: int = int_field(default=1, minimum=1)
    bias: bool = bool_field(default=True)
    batch_first: bool = bool_field(default=False)
    dropout: float = probability_field(default=0.0)
    bidirectional: bool = bool_field(default=False)
    proj_size: int = int_field(default=0, minimum=0)  # type: ignore[misc]
    dtype: np.dtype = dtype_field()

    _mode: ClassVar[str] = "LSTM"

    def __attrs_post_init__(self) -> None:
        if self.proj_size:
            self._check_proj()


@attrs.frozen
class GRU(_StackMixin, Layer):
    """A multi-layer GRU (gates ``r, z, n``, ``b_hn`` inside the reset product).

    Equivalent to ``torch.nn.GRU`` (parameters, their names, gate order, init, layouts).

    Shapes:
        x: ``input (L, N, H_in)`` (``(N, L, H_in)`` with batch_first, ``(L, H_in)``
        unbatched) or ``(input, h0)`` with ``h0 (num_layers * D, N, H)`` (no ``N``
        unbatched; zeros when omitted or ``None``) -> y: ``(output, h_n)``,
        ``output (L, N, D * H)`` in the input's layout.

    Args:
        input_size: features of the input ``H_in``.
        hidden_size: features of the hidden state ``H``.
        num_layers: stacked layers; layer ``k > 0`` takes layer ``k - 1``'s output.
        bias: whether to learn ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
        batch_first: input and output as ``(N, L, ...)`` instead of ``(L, N, ...)``
            (the hidden states keep ``(num_layers * D, N, H)``).
        dropout: dropout probability on each layer's output but the last's, in
            training. With ``dropout > 0`` the layer is stateful (a
            :class:`DropoutState` key, as :class:`nptfunc.layers.Dropout`).
        bidirectional: add a reverse direction (``D = 2``); outputs concatenate
            ``[forward, reverse]`` features and state ``k * D + d`` is layer ``k``,
            direction ``d``.
        dtype: NumPy float dtype of the parameters.

    Params:
        a ``dict`` keyed by torch's names: ``weight_ih_l{k}``, ``weight_hh_l{k}``,
        ``bias_ih_l{k}``, ``bias_hh_l{k}`` (``weight_hr_l{k}`` with proj_size), and
        the same with ``_reverse`` for the reverse direction.
    """

    input_size: int = int_field(minimum=1)
    hidden_size: int = int_field(minimum=1)
    num_layers: int = int_field(default=1, minimum=1)
    bias: bool = bool_field(default=True)
    batch_first: bool = bool_field(default=False)
    dropout: float = probability_field(default=0.0)
    bidirectional: bool = bool_field(default=False)
    dtype: np.dtype = dtype_field()

    _mode: ClassVar[str] = "GRU"
