"""Task files: the shipped tasks load; each kind of malformed file gives one clear message, exit 2, and creates nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.families import FAMILIES, LANDMARKS
from orchestrator.task import TaskError, load_task
from orchestrator.tokens import token_counter

REPO = Path(__file__).resolve().parents[2]
GOOD = {
    "name": "t",
    "question": "Where is the city stored?",
    "pairs": [
        {"clean": "The Eiffel Tower is in the city of", "corrupted": "The Colosseum is in the city of",
         "correct": " Paris", "wrong": " Rome"},
        {"clean": "The Colosseum is in the city of", "corrupted": "The Eiffel Tower is in the city of",
         "correct": " Rome", "wrong": " Paris"},
        {"clean": "The Parthenon is in the city of", "corrupted": "The Space Needle is in the city of",
         "correct": " Athens", "wrong": " Seattle"},
        {"clean": "The Space Needle is in the city of", "corrupted": "The Parthenon is in the city of",
         "correct": " Seattle", "wrong": " Athens"},
    ],
}


def _with(**changes: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        keys = dotted.split("__")
        target = data
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target.setdefault(k, {})
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return data


_DELETE = object()
MALFORMED: dict[str, tuple[object, str]] = {
    "missing field": (_with(question=_DELETE), "question: Field required; add it"),
    "wrong type": (_with(budgets={"max_experiments": "many"}), "budgets.max_experiments"),
    "unknown model": (_with(model="gpt-17-ultra"), "model: 'gpt-17-ultra' is not a known model"),
    "unknown metric": (_with(metric="accuracy"), "metric: 'accuracy' is not allowed; use one of"),
    "mismatched lengths": (_with(pairs__0__corrupted="The big famous Colosseum is in the city of"),
                           "pairs[0]: clean has 9 tokens but corrupted has 11"),
    "negative budget": (_with(budgets={"max_dollars": -5}), "budgets.max_dollars: input should be greater than or equal to 0"),
    "typo in field": (_with(budgetz={"max_experiments": 3}), "budgetz: unknown field; remove it (did you mean `budgets`?)"),
    "multi-token answer": (_with(pairs__1__correct=" Romeville"), "pairs[1].correct: ' Romeville' is 2 tokens"),
    "pairs and generator": (_with(generator={"family": "ioi", "n": 8}), "give `pairs:` or `generator:`, not both"),
    "unknown provider": (_with(agent={"provider": "openai"}), "agent.provider: 'openai' is not allowed"),
    "alpha out of range": (_with(significance={"alpha": 1.5}), "significance.alpha: input should be less than 1"),
    "too few pairs": (_with(pairs=GOOD["pairs"][:2]), "pairs: list should have at least 4 items"),
    "bad name": (_with(name="My Task!"), "name: String should match pattern"),
    "unknown generator family": ({"name": "t", "question": "q", "generator": {"family": "sports"}}, "generator.family: 'sports'"),
    "not a mapping": (["just", "a", "list"], "must be a YAML mapping"),
    "same answers": (_with(pairs__0__wrong=" Paris"), "pairs[0]: correct and wrong are both ' Paris'"),
}


@pytest.fixture(scope="module", autouse=True)
def tokenizer() -> None:
    token_counter("smollm2-135m")  # warms the engine cache once if needed (CI's set-up has done it)


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_task_gives_one_clear_message(kind: str, tmp_path: Path) -> None:
    data, expected = MALFORMED[kind]
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert expected in str(info.value), str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("name: [unclosed\n", "not valid YAML at line"),
    ("", "the task file is empty"),
])
def test_unparsable_files(text: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(text)
    with pytest.raises(TaskError, match=expected):
        load_task(path)


def test_missing_file() -> None:
    with pytest.raises(TaskError, match="no such task file"):
        load_task(Path("/nonexistent/task.yaml"))


@pytest.mark.parametrize("kind", ["missing field", "unknown model", "mismatched lengths", "negative budget", "unknown metric"])
def test_cli_bad_task_exits_nonzero_and_creates_nothing(kind: str, tmp_path: Path) -> None:
    data, expected = MALFORMED[kind]
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(data))
    runs = tmp_path / "runs"
    env = {**os.environ, "ORCH_COMPONENTS": "tests.orchestrator.fakes:build_components"}
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(path), "--runs-root", str(runs)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not runs.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task.yaml"]


def test_alignment_allows_unequal_lengths(tmp_path: Path) -> None:
    data = _with(pairs__0__corrupted="The big famous Colosseum is in the city of", alignment="final_token")
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_task(path).alignment == "final_token"


@pytest.mark.parametrize("name, n_pairs, length", [("factual_recall", 28, 9), ("ioi", 32, 14)])
def test_shipped_tasks_load_and_split(name: str, n_pairs: int, length: int) -> None:
    task = load_task(REPO / "tasks" / f"{name}.yaml")
    assert task.pairs is not None and len(task.pairs) == n_pairs >= 24
    explore, held = task.split_pairs()
    assert len(explore) + len(held) == n_pairs and explore and held
    assert not {p.clean for p in explore} & {p.clean for p in held}
    tok = token_counter(task.model)
    assert {tok.count(p.clean) for p in task.pairs} | {tok.count(p.corrupted) for p in task.pairs} == {length}
    assert task.budgets.max_experiments * task.sandbox.timeout_s >= 60  # sized for minutes, not seconds


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_generators_give_valid_equal_length_pairs(family: str) -> None:
    tok = token_counter("smollm2-135m")
    n = len(LANDMARKS) if family == "factual_recall" else 64
    pairs = FAMILIES[family](n, 3)
    assert len(pairs) == n
    lengths = {tok.count(p.clean) for p in pairs} | {tok.count(p.corrupted) for p in pairs}
    assert len(lengths) == 1
    assert all(tok.count(p.correct) == 1 and tok.count(p.wrong) == 1 and p.correct != p.wrong for p in pairs)
    assert len({p.clean for p in pairs}) == n


def test_generator_task_expands(tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_text("name: g\nquestion: q\ngenerator: {family: ioi, n: 30, seed: 4}\n")
    task = load_task(path)
    assert len(task.all_pairs()) == 30
    path.write_text("name: g\nquestion: q\ngenerator: {family: factual_recall, n: 500}\n")
    with pytest.raises(TaskError, match="generator.n: factual_recall has 28 landmarks"):
        load_task(path)


def test_model_may_be_a_local_directory_or_gguf_file(tmp_path: Path) -> None:
    (tmp_path / "mymodel").mkdir()
    (tmp_path / "mymodel" / "config.json").write_text("{}")
    (tmp_path / "weights.gguf").write_bytes(b"GGUF")
    (tmp_path / "empty").mkdir()
    path = tmp_path / "task.yaml"
    for ref, ok in (("mymodel", True), ("weights.gguf", True), ("empty", False)):
        path.write_text(yaml.safe_dump({**GOOD, "model": ref}))
        if ok:  # relative to the task file; stored as an absolute path
            assert load_task(path, check_tokenizer=False).model == str((tmp_path / ref).resolve())
        else:
            with pytest.raises(TaskError, match="exists, but is neither a .gguf file nor a directory with config.json"):
                load_task(path, check_tokenizer=False)
