"""The orchestrator side never imports mlx; the subprocess measurer validates, times out and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.features.measure_client import MeasureError, SubprocessMeasurer

FAKE = str(Path(__file__).with_name("fake_measure_server.py"))


def test_orchestrator_features_do_not_import_mlx():
    code = ("import sys, orchestrator.features.batch, orchestrator.features.refine, orchestrator.features.llm_explainer, "
            "orchestrator.features.measure_client, orchestrator.features.task; "
            "bad = [m for m in sys.modules if m == 'mlx' or m.startswith('mlx.')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])


def test_measures_through_the_server_protocol():
    with SubprocessMeasurer("unused", command=[sys.executable, FAKE, "ok"]) as m:
        (a, b) = m.measure(4, ["a cat sat", "nothing here"])
    assert a.tokens == [" a", " cat", " sat"] and a.acts == [0.0, 2.0, 0.0] and a.kind == "adversarial"
    assert b.max_act == 0.0 and m.calls == 1


@pytest.mark.parametrize("mode,message", [
    ("nostart", "did not start: no such SAE"),
    ("die", "exited while measuring"),
    ("error", "latent out of range"),
])
def test_failures_are_named(mode, message):
    m = SubprocessMeasurer("unused", command=[sys.executable, FAKE, mode])
    with pytest.raises(MeasureError, match=message):
        m.measure(1, ["a cat"])
    m.close()


def test_a_silent_server_is_stopped_not_waited_for():
    m = SubprocessMeasurer("unused", command=[sys.executable, FAKE, "silent"], timeout=1.5)
    with pytest.raises(MeasureError, match="silent for 2s"):
        m.measure(1, ["a cat"])
    assert m._proc is None
