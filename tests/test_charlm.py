"""examples/train_charlm.py with tiny settings: it learns, saves and loads exactly, samples reproducibly."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nptfunc import layers, random, tree

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TINY = ["--width", "16", "--layers", "1", "--heads", "2", "--context", "16", "--batch-size", "8",
        "--no-progress"]


@pytest.fixture
def charlm(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("train_charlm")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One tiny training run (30 steps) saved to a file: ``(path, result, stdout)``."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        charlm = importlib.import_module("train_charlm")
        path = tmp_path_factory.mktemp("charlm") / "lm.npz"
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = charlm.main([*TINY, "--steps", "30", "--eval-every", "10", "--dropout", "0.1",
                                  "--lr", "1e-2", "--save", str(path)])
    finally:
        sys.path.remove(str(EXAMPLES))
    return path, result, out.getvalue()


def _last_line(text):
    return text.strip().splitlines()[-1]


def test_prints_corpus_baseline_params_and_final_loss(saved):
    _, result, out = saved
    assert re.search(r"^corpus: pydoc_data.topics, [\d,]+ characters \([\d,]+ train, [\d,]+ validation\); "
                     r"vocabulary: \d+ characters$", out, re.M)
    assert re.search(r"^bigram baseline \(add-one counts\): val loss \d\.\d{3} nats/char$", out, re.M)
    assert re.search(r"^model: 1 blocks, width 16, 2 heads, context 16; [\d,]+ parameters$", out, re.M)
    assert re.search(r"^step    30/30  train loss \d\.\d{3}  val loss \d\.\d{3}  [\d,]+ tokens/s$", out, re.M)
    assert _last_line(out) == f"val loss: {result['val_loss']:.3f} nats/char"


def test_loss_falls(saved):
    _, result, _ = saved
    history = result["history"]
    assert history["val_step"] == [10, 20, 30]
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert np.mean(history["loss"][-5:]) < np.mean(history["loss"][:5]) - 0.5
    assert result["val_loss"] == history["val_loss"][-1]  # the model is evaluated without dropout


def test_save_and_load_round_trip_exactly(saved, charlm, capsys):
    path, result, _ = saved
    loaded = charlm.main(["--load", str(path), "--no-progress"])
    out = capsys.readouterr().out
    assert loaded["val_loss"] == result["val_loss"]
    tree.assert_same_structure(loaded["params"], result["params"])
    for a, b in zip(tree.tree_leaves(loaded["params"]), tree.tree_leaves(result["params"]), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert "loaded" in out
    assert _last_line(out) == f"val loss: {result['val_loss']:.3f} nats/char"


def test_generation_is_deterministic_for_a_seed(saved, charlm, capsys):
    path, _, _ = saved
    run = ["--load", str(path), "--generate", "40", "--prompt", "The ", "--top-k", "5", "--temperature", "0.8"]
    first = charlm.main([*run, "--seed", "3"])["sample"]
    again = charlm.main([*run, "--seed", "3"])["sample"]
    other = charlm.main([*run, "--seed", "4"])["sample"]
    capsys.readouterr()
    assert first == again
    assert len(first) == len("The ") + 40 and first.startswith("The ")
    assert other != first


def test_top_k_one_is_greedy(charlm):
    model = charlm.make_model(7, 8, 8, 1, 2)
    params = model.init(random.key(0))
    a = charlm.generate(model, params, np.array([1, 2]), 12, random.key(1), top_k=1)
    b = charlm.generate(model, params, np.array([1, 2]), 12, random.key(2), top_k=1)
    np.testing.assert_array_equal(a, b)  # one candidate: the key does not matter


def test_bad_text_path_is_a_one_line_error(tmp_path):
    missing = tmp_path / "no_such_file.txt"
    run = subprocess.run([sys.executable, str(EXAMPLES / "train_charlm.py"), "--text", str(missing)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode != 0
    assert run.stdout == ""
    assert run.stderr.strip() == f"--text {missing}: cannot read it: No such file or directory"


def test_a_text_that_is_not_utf8_is_a_one_line_error(charlm, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9 ".encode("latin-1") * 10)
    with pytest.raises(SystemExit, match=r"^--text .*latin1.txt: not UTF-8 text \(invalid .* at byte 3\)$"):
        charlm.main(["--text", str(path)])


def test_trains_on_a_text_file(charlm, capsys, tmp_path):
    path = tmp_path / "abc.txt"
    path.write_text("abcabcabd" * 40, encoding="utf-8")
    result = charlm.main([*TINY, "--text", str(path), "--steps", "3", "--eval-every", "3"])
    out = capsys.readouterr().out
    assert f"corpus: {path}, 360 characters (324 train, 36 validation); vocabulary: 4 characters" in out
    assert len(result["history"]["loss"]) == 3


def test_bigram_baseline_from_counts(charlm):
    train, val = np.array([0, 1, 0, 1, 1]), np.array([1, 0, 0])
    # add-one counts: row 0 -> (1, 3), row 1 -> (2, 2); val pairs (1, 0) and (0, 0)
    expected = -(np.log(2 / 4) + np.log(1 / 4)) / 2
    assert charlm.bigram_loss(train, val, 2) == pytest.approx(expected, rel=1e-12)


def test_model_is_one_layer_and_its_gradient_matches_finite_differences(charlm):
    """The model is one Sequential (no vjp in the example): its vjp against finite differences, in float64."""
    model = charlm.make_model(6, 5, 8, 2, 2, dtype=np.float64)
    assert isinstance(model, layers.Sequential) and not model.stateful
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    ids = np.array([[0, 3, 5, 1], [4, 4, 0, 1]])  # T = 4 < context 5: the first rows of the positions
    w = random.normal(random.key(1), (2, 4, 6), dtype=np.float64)

    def f(p):
        logits, _, _ = charlm.forward(model, p, state, ids)
        return float((logits * w).sum())

    _, vjp, _ = charlm.forward(model, params, state, ids, train=True)
    grads, dx = vjp(w)
    assert dx is None
    tree.assert_same_structure(grads, params)
    direction = tree.tree_map(lambda a: random.normal(random.key(a.size), a.shape, dtype=np.float64), params)
    eps = 1e-6
    numeric = (f(tree.tree_map(lambda p, d: p + eps * d, params, direction))
               - f(tree.tree_map(lambda p, d: p - eps * d, params, direction))) / (2 * eps)
    analytic = sum(float((g * d).sum()) for g, d in zip(tree.tree_leaves(grads), tree.tree_leaves(direction),
                                                         strict=True))
    assert numeric == pytest.approx(analytic, rel=1e-6)
    dpos = grads[0][1].weight  # the position embedding: rows 0..3 used, row 4 not
    assert np.abs(dpos[:4]).min() > 0 and not dpos[4].any()


def test_causal_the_future_does_not_change_the_past(charlm):
    model = charlm.make_model(6, 5, 8, 1, 2, dropout=0.1, dtype=np.float64)
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    a, _, _ = charlm.forward(model, params, state, np.array([[0, 1, 2, 3, 4]]))
    b, _, _ = charlm.forward(model, params, state, np.array([[0, 1, 2, 5, 5]]))
    np.testing.assert_array_equal(a[:, :3], b[:, :3])
    assert not np.allclose(a[:, 3:], b[:, 3:])


def test_a_longer_input_than_the_context_names_the_position_embedding(charlm):
    model = charlm.make_model(6, 5, 8, 1, 2)
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    with pytest.raises(ValueError, match=r"PositionEmbedding\(.*\): expected at most 5 positions .* got 6"):
        charlm.forward(model, params, state, np.zeros((1, 6), np.int64))


@pytest.mark.parametrize(("flags", "message"), [
    (["--heads", "3"], "--heads 3 must divide --width 128"),
    (["--temperature", "0"], "--temperature must be > 0, got 0.0"),
    (["--top-k", "0"], "--top-k must be >= 1, got 0"),
    (["--context", "0"], "--context must be >= 1, got 0"),
])
def test_bad_flags_are_usage_errors(charlm, capsys, flags, message):
    with pytest.raises(SystemExit) as e:
        charlm.main(flags)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
