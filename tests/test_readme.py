"""The README's functional example, run as written, checked number by number against torch."""

import pathlib
import re

import pytest
import torch

from nptfunc.testing import assert_close, to_numpy, to_torch

README = pathlib.Path(__file__).parents[1] / "README.md"


def _block(heading: str) -> str:
    """The first Python block after ``heading`` in the README."""
    section = README.read_text().split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _quick_start_block() -> str:
    return _block("## Quick start")


def test_readme_quick_start_matches_torch(capsys):
    ns: dict = {}
    code = _quick_start_block()
    code_before_step = code.split("params = tree.tree_map")[0]
    exec(compile(code_before_step, "README.md", "exec"), ns)
    params0, grads, dx, loss = ns["params"], ns["grads"], ns["dx"], ns["loss"]

    module = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()
    with torch.no_grad():
        for i in (0, 2):
            module[i].weight.copy_(to_torch(params0[i].weight))
            module[i].bias.copy_(to_torch(params0[i].bias))
    xt = to_torch(ns["x"]).requires_grad_(True)
    loss_t = torch.nn.CrossEntropyLoss()(module(xt), to_torch(ns["y"]))
    loss_t.backward()
    assert_close(loss, loss_t, rtol=1e-10)
    assert_close(dx, xt.grad, rtol=1e-10)
    for i in (0, 2):
        assert_close(grads[i].weight, module[i].weight.grad, rtol=1e-10)
        assert_close(grads[i].bias, module[i].bias.grad, rtol=1e-10)

    # the whole block, SGD step included, against torch.optim.SGD
    exec(compile(code, "README.md", "exec"), ns)
    torch.optim.SGD(module.parameters(), lr=0.1).step()
    for i in (0, 2):
        assert_close(ns["params"][i].weight, module[i].weight, rtol=1e-10)
        assert_close(ns["params"][i].bias, module[i].bias, rtol=1e-10)
    printed = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(printed - float(to_numpy(loss_t))) <= 1e-12


def test_readme_check_layer_block_runs_and_catches_a_wrong_derivative():
    ns: dict = {}
    code = _block("## Checking your own layers")
    exec(compile(code, "README.md", "exec"), ns)  # the check passes as written
    wrong = code.replace("dy * (s + y * (1 - s))", "dy * s")
    assert wrong != code
    with pytest.raises(AssertionError, match="dx: not close"):
        exec(compile(wrong, "README.md", "exec"), {})
