"""Facade classes of the recurrent layers, with torch's constructors, ``forward(input, hx=None)`` and repr.

One thin :class:`FunctionalModule` per layer of :mod:`nptfunc.layers.recurrent`:
``forward`` builds the core's ``x`` (``input`` or ``(input, hx)``) and returns
torch's tuple (``(output, h_n)``, ``(output, (h_n, c_n))``, ``h'``, ``(h', c')``);
``backward`` takes ``dy`` of that structure and returns ``dx`` of the input's
(``dinput`` or ``(dinput, dhx)``). Parameter names are torch's
(``weight_ih_l0``, ``bias_hh_l1_reverse``), so ``state_dict()`` loads both ways.
With ``dropout > 0`` the masks come from the module's key, as :class:`nn.Dropout`'s.
"""

from __future__ import annotations

from typing import Any

from nptfunc import layers
from nptfunc.nn._functional_module import FunctionalModule
from nptfunc.nn._layers import KeyLike, _device, _dtype

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell"]


class _Recurrent(FunctionalModule):
    def forward(self, input: Any, hx: Any = None) -> Any:
        """torch's ``forward(input, hx=None)``: ``hx`` is ``h0`` or, for an LSTM, ``(h0, c0)``."""
        return super().forward(input if hx is None else (input, hx))


class _Stack(_Recurrent):
    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if getattr(self.layer, "proj_size", 0):
            s += f", proj_size={self.proj_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self.layer, name) != default:
                s += f", {name}={getattr(self.layer, name)}"
        return s


class _Cell(_Recurrent):
    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.layer.bias:
            s += ", bias=False"
        if getattr(self.layer, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.layer.nonlinearity}"
        return s


class RNN(_Stack):
    """A multi-layer Elman RNN, as ``torch.nn.RNN``; see :class:`nptfunc.layers.RNN`.

    Shapes: ``input (L, N, H_in)`` (batch_first ``(N, L, H_in)``, unbatched ``(L, H_in)``),
    ``hx (num_layers * D, N, H)`` -> ``(output (L, N, D * H), h_n)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device: Any = None, dtype: Any = None, *,
                 key: KeyLike = None) -> None:
        _device("RNN", device)
        super().__init__(layers.RNN(input_size, hidden_size, num_layers, nonlinearity, bias, batch_first,
                                    dropout, bidirectional, dtype=_dtype("RNN", dtype)), key=key)


class LSTM(_Stack):
    """A multi-layer LSTM, as ``torch.nn.LSTM``; see :class:`nptfunc.layers.LSTM`.

    Shapes: ``input (L, N, H_in)``, ``hx = (h0 (num_layers * D, N, H_out), c0 (num_layers * D, N, H))``
    -> ``(output (L, N, D * H_out), (h_n, c_n))``; ``H_out = proj_size or hidden_size``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device: Any = None, dtype: Any = None, *, key: KeyLike = None) -> None:
        _device("LSTM", device)
        super().__init__(layers.LSTM(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                                     bidirectional, proj_size, dtype=_dtype("LSTM", dtype)), key=key)


class GRU(_Stack):
    """A multi-layer GRU, as ``torch.nn.GRU``; see :class:`nptfunc.layers.GRU`.

    Shapes: ``input (L, N, H_in)``, ``hx (num_layers * D, N, H)`` -> ``(output (L, N, D * H), h_n)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None, *, key: KeyLike = None) -> None:
        _device("GRU", device)
        super().__init__(layers.GRU(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                                    bidirectional, dtype=_dtype("GRU", dtype)), key=key)


class RNNCell(_Cell):
    """One Elman RNN step, as ``torch.nn.RNNCell``: ``(N, input_size), h (N, hidden_size) -> h'``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device: Any = None, dtype: Any = None, *, key: KeyLike = None) -> None:
        _device("RNNCell", device)
        super().__init__(layers.RNNCell(input_size, hidden_size, bias, nonlinearity,
                                        dtype=_dtype("RNNCell", dtype)), key=key)


class LSTMCell(_Cell):
    """One LSTM step, as ``torch.nn.LSTMCell``: ``(N, input_size), (h, c) -> (h', c')``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None, *, key: KeyLike = None) -> None:
        _device("LSTMCell", device)
        super().__init__(layers.LSTMCell(input_size, hidden_size, bias, dtype=_dtype("LSTMCell", dtype)),
                         key=key)


class GRUCell(_Cell):
    """One GRU step, as ``torch.nn.GRUCell``: ``(N, input_size), h (N, hidden_size) -> h'``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None, *, key: KeyLike = None) -> None:
        _device("GRUCell", device)
        super().__init__(layers.GRUCell(input_size, hidden_size, bias, dtype=_dtype("GRUCell", dtype)),
                         key=key)
