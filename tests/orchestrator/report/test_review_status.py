"""`review` with 0, 1 and many findings, `review --show N`, and `status` on live, stopped and finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.ledger import read_ledger
from orchestrator.rundir import RunDir, RunLock
from orchestrator.state import StateStore
from tests.orchestrator.report.builders import A, C, add_attempts, circuit_graph, heatmap, make_run


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunDir]:
    tmp = tmp_path_factory.mktemp("review")
    none = make_run(tmp, "none")
    add_attempts(none, [A("logit-lens", "logit_lens"), A("resid-sweep", decision="crash", reason="experiment timeout"),
                        A("weak", claims=[C("weak effect", 0.02, kept=False, p_value=0.6)])])
    one = make_run(tmp, "one")
    add_attempts(one, [A("logit-lens", "logit_lens"), A("resid-sweep", decision="keep", claims=[C("layer 14 carries it", 0.62)],
                                                        figures=[heatmap("resid_pre patching")])])
    many = make_run(tmp, "many")
    add_attempts(many, [A(f"probe-{i}", decision="keep" if i % 2 else "discard", figures=[circuit_graph()] if i == 7 else [],
                          claims=[C(f"component {i} matters", 0.1 * i, kept=bool(i % 2))]) for i in range(1, 10)])
    empty = make_run(tmp, "empty")
    return {"none": none, "one": one, "many": many, "empty": empty}


def test_review_with_no_finding(runs: dict[str, RunDir], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "review", str(runs["none"].root))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert "0 verified finding(s) from 3 attempts (crash 1, discard 2)" in lines[0]
    assert lines[1].startswith("  no finding has passed verification yet; 3 attempt(s) tried")
    data = json.loads(run_cli(capsys, "review", str(runs["none"].root), "--json")[1])
    assert data["findings"] == [] and data["attempts"] == 3
    code, out, _ = run_cli(capsys, "review", str(runs["empty"].root))
    assert out.splitlines() == [f"findings branch of {runs['empty'].root} (head {out.split('head ')[1][:10]}): "
                                "0 verified finding(s) from 0 attempts", "  no finding has passed verification yet"]


def test_review_with_one_finding(runs: dict[str, RunDir], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "review", str(runs["one"].root))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and "1 verified finding(s) from 2 attempts" in lines[0]
    assert lines[1].startswith("  0002 ") and "effect +0.620 [+0.520, +0.770]" in lines[1]
    assert lines[1].endswith("resid-sweep: layer 14 carries it")


def test_review_with_many_findings_matches_the_ledger(runs: dict[str, RunDir], capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(capsys, "review", str(runs["many"].root))
    lines = out.splitlines()[1:]
    kept = [e for e in read_ledger(runs["many"].ledger) if e.decision == "keep"]
    assert len(lines) == len(kept) == 5
    for line, e in zip(lines, kept):
        v = e.statistics[0]
        assert line.startswith(f"  {e.attempt:04d} ")
        assert f"effect {v['effect']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]" in line
    data = json.loads(run_cli(capsys, "review", str(runs["many"].root), "--json")[1])
    assert [f["attempt"] for f in data["findings"]] == [e.attempt for e in kept]
    assert [f["effect"] for f in data["findings"]] == [e.statistics[0]["effect"] for e in kept]


def test_show_a_finding(runs: dict[str, RunDir], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "review", str(runs["one"].root), "--show", "2")
    assert code == 0
    assert out.startswith("attempt 0002 resid-sweep (activation_patching) — finding on the findings branch (commit ")
    assert "claim 0  KEPT      effect +0.6200 [+0.5200, +0.7700]" in out
    for section in ("findings/0002-resid-sweep.md", "experiments/0002-resid-sweep.py", "summary (results/0002.json)",
                    "figures (1; as plots: python -m orchestrator report"):
        assert f"──── {section}" in out, section
    assert "# Finding 0002: resid-sweep" in out and "def run(ctx):" in out and "[heatmap] resid_pre patching" in out
    data = json.loads(run_cli(capsys, "review", str(runs["one"].root), "--show", "2", "--json")[1])
    assert data["is_finding"] and data["claims"][0]["effect"] == 0.62 and data["figures"][0]["type"] == "heatmap"
    assert data["note"].startswith("# Finding 0002") and "_figure_specs" not in data


def test_show_a_discarded_attempt_and_a_missing_one(runs: dict[str, RunDir], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "review", str(runs["none"].root), "--show", "3")
    assert code == 0 and "— not a finding: discard" in out.splitlines()[0] and "not kept  effect +0.0200" in out
    assert "findings/0003" not in out  # no note for an attempt that was not kept
    code, out, err = run_cli(capsys, "review", str(runs["one"].root), "--show", "42")
    assert code == 2 and out == "" and err.strip() == "error: attempt 42 is not in the ledger (2 attempts; findings: 2)"
    code, out, _ = run_cli(capsys, "review", str(runs["many"].root), "--show", "7")
    assert code == 0 and "[graph] Candidate circuit" in out and "L21 H0 -> logits  +0.7" in out


def test_show_strips_terminal_escapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path)
    add_attempts(run, [A("evil", decision="keep", claims=[C("\x1b]0;pwned\x07claim\x1b[2J", 0.5)], summary="\x1b[31mred")])
    for args in (["review", str(run.root)], ["review", str(run.root), "--show", "1"], ["status", str(run.root)]):
        code, out, _ = run_cli(capsys, *args)
        assert code == 0 and "\x1b" not in out and "\x07" not in out


def test_status_of_a_finished_run(runs: dict[str, RunDir], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "status", str(runs["none"].root))
    assert code == 0
    assert "phase     finished" in out
    assert "progress  3/12 experiments, 0 kept, 2 discarded, 1 crashed" in out
    assert "time      0:12:34 of 0.25 h over 1 session(s)\n" in out
    data = json.loads(run_cli(capsys, "status", str(runs["none"].root), "--json")[1])
    assert (data["phase"], data["discarded"], data["crashed"], data["eta_s"], data["alive"]) == ("finished", 2, 1, 0.0, False)


def _live(tmp_path: Path) -> RunDir:
    run = make_run(tmp_path)
    add_attempts(run, [A("a"), A("b", decision="keep", claims=[C("b", 0.5)])], finish=None, elapsed_s=300.0)
    store = StateStore(run.root)
    state = store.load()
    state.in_flight = {3: "running"}
    state.next_attempt = 4
    state.updated_at = ""  # no time since the last save to add: the ETA is exact
    store.save(state)
    return run


def test_status_while_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _live(tmp_path)
    with RunLock(run):  # this process stands in for the loop
        code, out, _ = run_cli(capsys, "status", str(run.root))
        data = json.loads(run_cli(capsys, "status", str(run.root), "--json")[1])
    assert code == 0 and "phase     running (attempt 3)  (pid " in out
    assert "progress  2/12 experiments, 1 kept, 1 discarded, 0 crashed" in out
    # 150 s per experiment so far, 9.5 experiments to go (the one in flight counts half) = 1425 s; the clock allows 600 s.
    assert data["eta_s"] == pytest.approx(600.0) and "ETA 0:10:00" in out
    assert data["alive"] is True and data["phase"] == "running (attempt 3)"


def test_status_of_a_killed_run_says_how_to_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _live(tmp_path)
    code, out, _ = run_cli(capsys, "status", str(run.root))
    assert code == 0 and "phase     not running (attempt 3 interrupted)" in out
    assert f"stopped — continue with: python -m orchestrator resume {run.root}" in out


def test_eta_uses_the_pace_when_the_clock_is_far() -> None:
    from orchestrator.report.live import eta_seconds

    assert eta_seconds(finished=False, elapsed_s=100, completed=2, in_flight=0, max_experiments=10, wall_clock_hours=8) == 400
    assert eta_seconds(finished=False, elapsed_s=5, completed=0, in_flight=1, max_experiments=10, wall_clock_hours=None) is None
    assert eta_seconds(finished=True, elapsed_s=5, completed=1, in_flight=0, max_experiments=10, wall_clock_hours=1) == 0.0


def test_review_of_a_finding_without_claim_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path)
    add_attempts(run, [A("latent-99", "explain-latent", "keep", summary="test detection 0.900 vs baseline 0.500 ± 0.100")])
    _, out, _ = run_cli(capsys, "review", str(run.root))
    assert out.splitlines()[1].endswith("latent-99: test detection 0.900 vs baseline 0.500 ± 0.100")
