"""Guard unit tests: each rejection names the line, the problem and what to do instead."""

from __future__ import annotations

import pytest

from sandbox.guard import MAX_SOURCE_BYTES, check_source, format_issues

GOOD = '''
from __future__ import annotations
import math
import numpy as np
from collections import defaultdict
from dataclasses import dataclass
import engine
from engine import Patch
from engine.interventions import Ablate

@dataclass
class Row:
    layer: int
    value: float

def run(ctx):
    logits = ctx.model.forward(ctx.clean_tokens)
    base = ctx.metric(logits)
    rows = [Row(i, math.sqrt(i)) for i in range(3)]
    claim = {"statement": "x", "interventions": [Patch(hook="blocks.3.hook_resid_pre").model_dump()],
             "expected_direction": "increase"}
    return {"summary": "ok", "measurements": {"base": base, "n": len(rows)}, "claims": [claim]}
'''


def lines(src: str) -> list[int]:
    return [i.line for i in check_source(src)]


def test_good_experiment_passes() -> None:
    assert check_source(GOOD) == []


@pytest.mark.parametrize(
    ("snippet", "needle"),
    [
        ("import os", "import of 'os' is not allowed; experiments may import only"),
        ("import subprocess", "import of 'subprocess'"),
        ("import ctypes", "import of 'ctypes'"),
        ("import importlib", "import of 'importlib'"),
        ("from socket import socket", "import of 'socket'"),
        ("import sandbox.metric", "may not touch the sandbox"),
        ("from orchestrator.ratchet import Ratchet", "may not touch the sandbox, the orchestrator"),
        ("import contract.setup", "may not touch"),
        ("import engine.loading.resolve", "engine's public API"),
        ("import numpy.ctypeslib", "reaches files"),
        ("from numpy import ctypeslib", "importing 'ctypeslib'"),
        ("from numpy import *", "import the names you need explicitly"),
        ("from . import x", "relative imports"),
        ("x = eval('1')", "'eval' is not allowed"),
        ("exec('x = 1')", "'exec' is not allowed"),
        ("f = open('x')", "'open' is not allowed"),
        ("y = getattr(ctx, 'model')", "'getattr' is not allowed"),
        ("z = globals()", "'globals' is not allowed"),
        ("z = vars()", "'vars' is not allowed"),
        ("m = __import__('os')", "the name '__import__' is not allowed"),
        ("b = __builtins__", "the name '__builtins__' is not allowed"),
        ("c = ().__class__", "attribute '.__class__' is not allowed"),
        ("c = ctx._state", "attribute '._state' is not allowed"),
        ("import numpy as np\nc = np.ctypeslib", "attribute '.ctypeslib' is not allowed"),
        ("import numpy as np\nc = np.f2py", "attribute '.f2py'"),
        ("import statistics\nr = statistics.random", None),
        ("import typing\nh = typing.get_type_hints", "attribute '.get_type_hints'"),
        ("import numpy as np\nnp.save('x', 1)", "attribute '.save'"),
        ("def f():\n    yield 1\ng = f().gi_frame", "attribute '.gi_frame'"),
        ("breakpoint()", "'breakpoint' is not allowed"),
        ("s = 'a__b'", "containing '__'"),
        ("class A(metaclass=type):\n    pass", "metaclasses"),
        ("class A:\n    def __reduce__(self):\n        return (print, ())", "defining '__reduce__'"),
        ("global q", "'global' is not allowed"),
        ("match ctx:\n    case object(__class__=c):\n        pass", "class pattern attribute"),
        ("import typing\nf = typing.operator.attrgetter('gi_frame')", "attribute '.operator'"),
        ("import dataclasses\nc = dataclasses.inspect", "attribute '.inspect'"),
        ("import statistics\nc = statistics.sys", "attribute '.sys'"),
    ],
)
def test_rejections_name_line_and_fix(snippet: str, needle: str | None) -> None:
    src = "def run(ctx):\n    return {}\n" + snippet + "\n"
    issues = check_source(src)
    if needle is None:  # 'random' itself is harmless; its private parts are what is banned
        assert issues == []
        return
    assert issues, f"guard accepted: {snippet!r}"
    text = format_issues(issues)
    assert needle in text, text
    assert all(i.line >= 3 for i in issues), text
    assert text.startswith(f"line {issues[0].line}: ")


def test_missing_run_and_syntax_error_and_size() -> None:
    assert "def run(ctx)" in check_source("x = 1\n")[0].message
    err = check_source("def run(ctx):\n    return (\n")
    assert err[0].message.startswith("syntax error") and err[0].line >= 2
    big = "def run(ctx):\n    return {}\n" + "#" * (MAX_SOURCE_BYTES + 1)
    assert "limit" in check_source(big)[0].message


def test_every_issue_is_reported_in_line_order() -> None:
    src = "import os\nimport sys\ndef run(ctx):\n    return eval('1')\n"
    assert lines(src) == [1, 2, 4]
