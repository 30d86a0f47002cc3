"""The port rule: torch programs run with ``nptfunc.torch`` by changing only their imports.

The models of ``examples/mnist_port.py`` (PyTorch's MNIST example ``Net``, a small
ResNet, a ModuleList MLP) are written once; each test runs that one source with
``torch`` and with ``nptfunc.torch``.
"""

import pathlib
import sys

import numpy as np
import pytest

import nptfunc
from nptfunc import convert
from nptfunc.testing import assert_close

torch = pytest.importorskip("torch")

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"
SOURCE = (EXAMPLES / "mnist_port.py").read_text()


@pytest.fixture(scope="module")
def libs():
    """The example's namespace run with nptfunc.torch and with torch (only the imports differ)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        out = {}
        for name, src in (("ours", SOURCE), ("torch", SOURCE.replace("nptfunc.torch", "torch"))):
            ns = {"__name__": f"mnist_port_{name}"}
            exec(compile(src, f"mnist_port ({name})", "exec"), ns)
            out[name] = ns
        return out
    finally:
        sys.path.remove(str(EXAMPLES))


def test_one_facade_two_import_paths():
    import nptfunc.torch.nn as tnn
    import nptfunc.torch.nn.functional as tf
    import nptfunc.torch.optim as topt
    from nptfunc.torch.optim.lr_scheduler import StepLR

    import nptfunc.torch as nt
    from nptfunc.torch.utils.data import DataLoader

    assert tnn is nptfunc.nn and topt is nptfunc.optim and tf is nptfunc.nn.functional
    assert StepLR is nptfunc.optim.lr_scheduler.StepLR and nt.nn is nptfunc.nn
    assert DataLoader.__module__ == "nptfunc.torch.utils.data"


def test_the_example_differs_from_torchs_only_in_its_imports():
    imports = [line for line in SOURCE.splitlines() if "nptfunc" in line and line.startswith(("import", "from"))]
    assert imports == ["import nptfunc.torch as torch", "import nptfunc.torch.nn as nn",
                       "import nptfunc.torch.nn.functional as F", "import nptfunc.torch.optim as optim",
                       "from nptfunc.torch.optim.lr_scheduler import StepLR",
                       "from nptfunc.torch.utils.data import DataLoader, TensorDataset"]
    models = SOURCE.split(imports[-1])[1].split("# " + "-" * 72 + " data")[0]
    assert "class Net(nn.Module)" in models and "nptfunc" not in models


def _pair(libs, name, seed=0):
    ours = libs["ours"]["MODELS"][name]().double()
    theirs = libs["torch"]["MODELS"][name]().double()
    ours.load_state_dict(convert.state_dict_from_torch(theirs.state_dict()))
    for m in (ours, theirs):  # dropout draws different masks in the two libraries: compare without it
        for child in m.modules():
            if type(child).__name__ == "Dropout":
                child.eval()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 1, 28, 28))
    y = rng.integers(0, 10, 3)
    return ours, theirs, x, y


def _step_loss(lib, model, x, y):
    return lib["F"].nll_loss(model(lib["torch"].tensor(x)), lib["torch"].tensor(y))


@pytest.mark.parametrize("name", ["net", "resnet", "mlp"])
def test_float64_gradients_after_one_step_equal_torchs(libs, name):
    ours, theirs, x, y = _pair(libs, name)
    loss = _step_loss(libs["ours"], ours, x, y)
    tloss = _step_loss(libs["torch"], theirs, x, y)
    loss.backward()
    tloss.backward()
    assert_close(loss.item(), tloss.item())
    named = list(ours.named_parameters())
    assert [n for n, _ in named] == [n for n, _ in theirs.named_parameters()]
    for (n, p), (_, tp) in zip(named, theirs.named_parameters(), strict=True):
        assert p.grad.dtype == np.float64
        assert_close(p.grad, tp.grad, rtol=1e-10, name=n)


@pytest.mark.parametrize("name", ["net", "resnet", "mlp"])
def test_twenty_steps_of_sgd_momentum_then_adam_end_at_torchs_parameters(libs, name):
    ours, theirs, x, y = _pair(libs, name, seed=1)
    for lib, model in ((libs["ours"], ours), (libs["torch"], theirs)):
        sgd = lib["optim"].SGD(model.parameters(), lr=0.01, momentum=0.9)
        adam = lib["optim"].Adam(model.parameters(), lr=1e-3)
        for step in range(20):
            opt = sgd if step < 10 else adam
            opt.zero_grad()
            _step_loss(lib, model, x, y).backward()
            opt.step()
    for (n, v), (_, tv) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
        scale = max(float(np.abs(tv.numpy()).max()), 1.0)
        assert_close(v, tv, rtol=1e-8, atol=1e-8 * scale, name=n)


@pytest.mark.parametrize("name", ["mlp", "resnet", "net"])
def test_the_ported_script_reaches_95_percent_within_four_epochs(name, monkeypatch, capsys):
    """The example's main (Adadelta at lr 1.0, StepLR, DataLoader(TensorDataset(...))), as torch's."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import mnist_port

    accuracies = mnist_port.main(["--model", name, "--epochs", "4", "--log-interval", "1000",
                                  "--stop-at", "0.95"])
    assert len(accuracies) <= 4 and accuracies[-1] >= 0.95, accuracies
    assert "Test set: Average loss:" in capsys.readouterr().out
