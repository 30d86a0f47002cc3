"""``nptfunc.torch.utils``: ``utils.data`` (``TensorDataset``, ``DataLoader``)."""

from nptfunc.torch.utils import data

__all__ = ["data"]
