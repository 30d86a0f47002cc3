"""The facade's one piece of global state: the seeded key stream of :func:`manual_seed`.

A facade module built without ``key=`` and ``F.dropout`` without a module take
their key from :func:`next_key`: the next key of the stream that
``manual_seed(n)`` started, or, before any ``manual_seed``, a fresh seed from the
operating system's entropy (explicit non-determinism, as two ``nn.Linear(4, 3)``
differ in torch). The functional core never reads this stream: it takes keys.
"""

from __future__ import annotations

import secrets
import threading

import numpy as np

from nptfunc import random
from nptfunc.random import Key

__all__ = ["as_key", "initial_seed", "manual_seed", "next_key"]


class _Stream(threading.local):
    key: Key | None = None
    seed: int | None = None
    count = 0


_stream = _Stream()


def manual_seed(seed: int) -> None:
    """Start the facade's key stream at ``seed``. Equivalent to ``torch.manual_seed``.

    Every later module built without ``key=`` and every ``F.dropout`` without a
    module draw the next key of this stream, so a script is reproducible.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        msg = f"manual_seed: expected seed to be an int, got {seed!r}"
        raise TypeError(msg)
    _stream.seed = int(seed)
    _stream.key = random.key(int(seed) % 2**64)
    _stream.count = 0


def initial_seed() -> int | None:
    """The seed given to the last :func:`manual_seed` (``None`` before any)."""
    return _stream.seed


def next_key() -> Key:
    """The next key of the seeded stream, or a fresh key from OS entropy before any :func:`manual_seed`."""
    if _stream.key is None:
        return random.key(secrets.randbits(64))
    k = random.fold_in(_stream.key, _stream.count)
    _stream.count += 1
    return k


def as_key(key: Key | int | None, owner: str = "nn") -> Key:
    """A :class:`Key` from a key, an int seed, or ``None`` (the next key of :func:`next_key`)."""
    if key is None:
        return next_key()
    if isinstance(key, Key):
        return key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return random.key(int(key))
    msg = f"{owner}: expected key to be an nptfunc.random.Key, an int seed or None, got {key!r}"
    raise TypeError(msg)
