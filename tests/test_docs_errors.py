"""docs/errors.md: every snippet raises exactly the error the page quotes."""

import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).parents[1] / "docs" / "errors.md"
TEXT = DOC.read_text()
BLOCKS = re.findall(r"```(python|text)\n(.*?)```", TEXT, re.S)
PRELUDE = BLOCKS[0][1]
PAIRS = [(BLOCKS[i][1], BLOCKS[i + 1][1].rstrip("\n")) for i in range(1, len(BLOCKS) - 1)
         if BLOCKS[i][0] == "python" and BLOCKS[i + 1][0] == "text"]


def test_every_snippet_has_its_message():
    assert len(PAIRS) == sum(kind == "python" for kind, _ in BLOCKS) - 1 >= 15


@pytest.mark.parametrize(("code", "expected"), PAIRS, ids=[e.split(":")[1][:40] for _, e in PAIRS])
def test_snippet_raises_the_quoted_error(code, expected):
    ns: dict = {}
    exec(PRELUDE, ns)
    exc_name, message = expected.split(": ", 1)
    with pytest.raises(Exception) as info:
        exec(code, ns)
    assert type(info.value).__name__ == exc_name
    pattern = ".*".join(re.escape(part) for part in message.split("..."))
    assert re.fullmatch(pattern, str(info.value), re.S), str(info.value)
