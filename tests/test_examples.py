"""Every example runs, with tiny settings, so that none of them can rot."""

import gzip
import importlib
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nptfunc import random

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

pytest.importorskip("sklearn", reason="the examples' data ships with scikit-learn (the examples extra)")


@pytest.fixture
def example(monkeypatch):
    """Import an example module the way the script would see its sibling ``_digits``."""
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def load(name):
        return importlib.import_module(name)

    return load


def _last_line(text):
    return text.strip().splitlines()[-1]


# ---------------------------------------------------------------- train_digits
def test_train_digits_trains_saves_and_evaluates(example, capsys, tmp_path):
    train_digits = example("train_digits")
    path = tmp_path / "digits.npz"
    result = train_digits.main(["--epochs", "2", "--limit", "300", "--no-progress", "--save", str(path)])
    out = capsys.readouterr().out
    assert re.search(r"^digits: 300 train and 300 test images of 8x8; 2 epochs", out, re.M)
    assert re.search(r"^epoch  2/2  loss \d\.\d{4}  train acc \d\.\d{4}  test acc \d\.\d{4}  \d+\.\ds$",
                     out, re.M)
    assert re.fullmatch(r"test accuracy: [01]\.\d{3}", _last_line(out))
    assert len(result["history"]["loss"]) == 2
    assert result["history"]["loss"][1] < result["history"]["loss"][0]  # it learns
    assert result["test_acc"] > 0.5
    assert path.is_file()

    evaluated = train_digits.main(["--eval", str(path), "--limit", "300"])
    out = capsys.readouterr().out
    assert evaluated["test_acc"] == result["test_acc"]  # the saved params and state, bit for bit
    assert _last_line(out) == f"test accuracy: {result['test_acc']:.3f}"


def test_train_digits_eval_refuses_other_files(example, tmp_path):
    import nptfunc

    train_digits = example("train_digits")
    path = tmp_path / "other.npz"
    nptfunc.save({"weights": np.zeros(3)}, path)
    with pytest.raises(SystemExit, match=r"other.npz: expected a file written by train_digits.py --save"):
        train_digits.main(["--eval", str(path)])


def _foreign_files(tmp_path):
    import pickle

    import nptfunc

    (tmp_path / "text.npz").write_text("hello")
    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"params": 1}))
    np.savez(tmp_path / "plain.npz", w=np.ones(2))
    nptfunc.save({"config": {"data": "digits", "image_size": 8}, "params": (None,), "state": (None,)},
                 tmp_path / "other_model.npz")
    nptfunc.save({"config": {"data": "digits", "image_size": "8"}, "params": (), "state": ()},
                 tmp_path / "bad_config.npz")
    return {
        "missing.npz": r"missing\.npz: cannot read it: No such file or directory",
        "text.npz": r"nptfunc\.load\('.*text\.npz'\): not an nptfunc \.npz file",
        "pickle.npz": r"pickle\.npz'\): not an nptfunc \.npz file .*it holds pickled data",
        "plain.npz": r"plain\.npz'\): the file has no '__nptfunc__' entry",
        "other_model.npz": r"other_model\.npz: expected a file written by train_digits\.py --save for this model: "
                           r"the model's params and state and the file's",
        "bad_config.npz": r"bad_config\.npz: expected a file written by train_digits\.py --save \(its config is",
    }


def test_train_digits_eval_of_a_missing_or_foreign_file_is_one_line(example, tmp_path):
    train_digits = example("train_digits")
    for name, match in _foreign_files(tmp_path).items():
        with pytest.raises(SystemExit) as info:
            train_digits.main(["--eval", str(tmp_path / name)])
        message = info.value.code
        assert isinstance(message, str) and "\n" not in message and re.search(match, message), (name, message)


def test_train_digits_eval_of_a_checkpoint_with_other_shapes_names_the_entry(example, tmp_path):
    import nptfunc

    train_digits = example("train_digits")
    model = train_digits._digits.cnn(8)
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    params = (params[0].__class__(np.zeros((5, 1, 3, 3), np.float32), params[0].bias), *params[1:])
    nptfunc.save({"config": {"data": "digits", "image_size": 8}, "params": params, "state": state},
                 tmp_path / "c.npz")
    with pytest.raises(SystemExit, match=r"c\.npz: expected a file written by train_digits\.py --save for this "
                                         r"model: params\.0\.weight is float32 \(5, 1, 3, 3\), expected float32 "
                                         r"\(32, 1, 3, 3\)"):
        train_digits.main(["--eval", str(tmp_path / "c.npz")])


def test_train_digits_eval_as_a_script_prints_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    (tmp_path / "text.npz").write_text("hello")
    done = subprocess.run([sys.executable, str(EXAMPLES / "train_digits.py"), "--eval", "text.npz"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "text.npz" in done.stderr, done.stderr


def test_train_digits_eval_says_what_it_ignores(example, capsys, tmp_path):
    train_digits = example("train_digits")
    path = tmp_path / "digits.npz"
    train_digits.main(["--epochs", "1", "--limit", "100", "--no-progress", "--save", str(path)])
    before = path.read_bytes()
    capsys.readouterr()
    train_digits.main(["--eval", str(path), "--limit", "100", "--save", str(tmp_path / "other.npz"),
                       "--plot", str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert f"--eval trains nothing, so --save {tmp_path / 'other.npz'} is ignored" in err
    assert f"--eval trains nothing, so --plot {tmp_path / 'c.png'} is ignored" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.npz"] and path.read_bytes() == before


def test_the_examples_extra_installs_what_the_examples_import():
    """The README installs '.[examples]': --plot (matplotlib), the data (scikit-learn) and tqdm come with it."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=!~ \[]", req)[0].lower() for req in extras["examples"]}
    assert {"matplotlib", "scikit-learn", "tqdm"} <= names
    assert "pip install -e '.[examples]'" in (ROOT / "README.md").read_text()


def test_train_digits_same_seed_same_run(example, capsys):
    train_digits = example("train_digits")
    args = ["--epochs", "1", "--limit", "100", "--no-progress"]
    a = train_digits.main([*args, "--seed", "3"])
    b = train_digits.main([*args, "--seed", "3"])
    c = train_digits.main([*args, "--seed", "4"])
    assert a["history"]["loss"] == b["history"]["loss"]
    assert a["history"]["loss"] != c["history"]["loss"]


def test_train_digits_distributed_in_one_process_is_the_same_run(example, capsys, monkeypatch):
    from nptfunc import distributed

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # one process, as without the mpi extra
    monkeypatch.setattr(distributed, "_world", None)
    train_digits = example("train_digits")
    args = ["--epochs", "1", "--limit", "100", "--no-progress"]
    a = train_digits.main(args)
    b = train_digits.main([*args, "--distributed"])
    assert a["history"]["loss"] == b["history"]["loss"] and a["test_acc"] == b["test_acc"]
    assert "data-parallel over 1 rank: 32 images per rank and step" in capsys.readouterr().out


def test_train_digits_progress_bar(example, capsys):
    pytest.importorskip("tqdm")
    train_digits = example("train_digits")
    train_digits.main(["--epochs", "1", "--limit", "64", "--batch-size", "32"])
    assert "epoch 1/1" in capsys.readouterr().err  # tqdm writes its bar to stderr


def test_train_digits_plot(example, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    train_digits = example("train_digits")
    png = tmp_path / "curves.png"
    train_digits.main(["--epochs", "2", "--limit", "100", "--no-progress", "--plot", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"saved the curves to {png}" in capsys.readouterr().out


def test_train_digits_plot_without_matplotlib_says_how_to_install(example, capsys, monkeypatch, tmp_path):
    train_digits = example("train_digits")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(SystemExit) as e:
        train_digits.main(["--plot", str(tmp_path / "c.png")])
    assert e.value.code == 2
    assert "--plot needs matplotlib, which is not installed: pip install matplotlib" in capsys.readouterr().err


def test_train_digits_mnist_needs_a_folder(example, capsys):
    train_digits = example("train_digits")
    with pytest.raises(SystemExit):
        train_digits.main(["--data", "mnist"])
    assert "--data mnist needs --data-dir DIR" in capsys.readouterr().err


def _idx(a):
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape)
    return header + a.tobytes()


def _write_mnist(folder, n_train, n_test, gz):
    rng = np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        images = rng.integers(0, 50, size=(n, 28, 28), dtype=np.uint8)
        images[np.arange(n), labels * 2 + 4, 4:24] = 255  # a learnable bar per class
        for name, a in ((f"{stem}-images-idx3-ubyte", images), (f"{stem}-labels-idx1-ubyte", labels)):
            raw = _idx(a)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_train_digits_on_mnist_files(example, capsys, tmp_path, gz):
    _write_mnist(tmp_path, 48, 16, gz)
    train_digits = example("train_digits")
    result = train_digits.main(["--data", "mnist", "--data-dir", str(tmp_path), "--epochs", "1",
                                "--no-progress", "--batch-size", "16"])
    out = capsys.readouterr().out
    assert "mnist: 48 train and 16 test images of 28x28" in out
    assert 0 <= result["test_acc"] <= 1


def test_train_digits_runs_as_a_script_from_another_folder(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(EXAMPLES / "train_digits.py"), "--epochs", "1",
                           "--limit", "100", "--no-progress"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"test accuracy: [01]\.\d{3}", _last_line(done.stdout))


# ------------------------------------------------------------------ adversarial
def test_adversarial(example, capsys):
    adversarial = example("adversarial")
    results = adversarial.main(["--epochs", "2", "--limit", "300", "--eps", "0", "0.3"])
    out = capsys.readouterr().out
    assert re.search(r"^\s+0\.30\s+[01]\.\d{3}", out, re.M)
    assert set(results) == {0.0, 0.3}
    assert results[0.3] < results[0.0]


def test_fgsm_raises_the_loss_and_stays_in_range(example):
    adversarial = example("adversarial")
    import _digits

    (x, y), _ = _digits.load_digits(limit=64)
    model = _digits.cnn()
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    loss = lambda xx: float(_digits.LOSS.apply(model.apply(params, xx, state, train=False)[0], y)[0])  # noqa: E731
    x_adv = adversarial.fgsm(model, params, state, x, y, 0.05)
    assert x_adv.dtype == x.dtype and x_adv.shape == x.shape
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert np.abs(x_adv - x).max() <= 0.05 + 1e-6
    assert loss(x_adv) > loss(x)
    np.testing.assert_array_equal(adversarial.fgsm(model, params, state, x, y, 0.0), x)


def test_input_gradient_matches_finite_differences(example):
    adversarial = example("adversarial")
    import _digits

    (x, y), _ = _digits.load_digits(limit=4)
    model = _digits.cnn()
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    dx = adversarial.input_gradient(model, params, state, x, y)
    loss = lambda xx: float(_digits.LOSS.apply(model.apply(params, xx, state, train=False)[0], y)[0])  # noqa: E731
    direction = np.sign(dx)
    eps = np.float32(1e-2)
    slope = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
    assert slope == pytest.approx(float(np.vdot(dx, direction)), rel=0.05)


# ----------------------------------------------------------------- custom_layer
def test_custom_layer(example, capsys):
    pytest.importorskip("torch")
    custom_layer = example("custom_layer")
    custom_layer.main()
    out = capsys.readouterr().out
    assert "float32: y, dx and every parameter gradient match torch" in out
    assert "inside a Sequential" in out


def test_custom_layer_check_catches_a_wrong_vjp(example):
    custom_layer = example("custom_layer")
    from nptfunc.testing import check_vjp

    class Broken(custom_layer.ResidualBlock):
        def _apply(self, params, x):
            y, vjp = super()._apply(params, x)
            return y, lambda dy: (vjp(dy)[0], vjp(dy)[1] * 0.5)

    block = Broken(2, dtype=np.float64)
    x = random.normal(random.key(0), (1, 2, 4, 4), dtype=np.float64)
    with pytest.raises(AssertionError, match="dx: not close"):
        check_vjp(block, block.init(random.key(1)), x)


# ------------------------------------------------------------------ torch_style
def test_torch_style(example, capsys):
    torch_style = example("torch_style")
    results = torch_style.main(["--epochs", "2", "--limit", "300"])
    out = capsys.readouterr().out
    assert set(results) == {"cnn", "reference"}
    assert re.search(r"^cnn: test accuracy: [01]\.\d{3}$", out, re.M)
    assert re.search(r"^reference: test accuracy: [01]\.\d{3}$", out, re.M)
    assert all(acc > 0.3 for acc in results.values())  # 20 steps already learn (chance is 0.1)


def test_torch_style_reference_cnn_is_the_reference_on_mnist(example):
    torch_style = example("torch_style")
    model = torch_style.reference_cnn(28, 0)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes["0.weight"] == (16, 1, 3, 3)
    assert shapes["2.weight"] == (128, 16 * 28 * 28)
    assert shapes["3.weight"] == (128,)
    assert shapes["5.weight"] == (10, 128)
