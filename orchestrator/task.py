"""The task file: schema, YAML loading and the checks that need the tokenizer.

Why strict: a run is unattended for hours, so every mistake in the task file must surface
before anything is created, as one message that names the field and says how to fix it.
"""

from __future__ import annotations

import difflib
import hashlib
import random
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from orchestrator.families import FAMILIES
from orchestrator.tokens import TokenizerUnavailable, is_embedded, token_counter
from sandbox.schemas import PromptPair


class TaskError(ValueError):
    """A task file that cannot be run; the message names the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# YAML turns `true` into a bool and `1e3` into a string; lax pydantic would read them as 1 and 1000.0.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
SEED_MAX = 2**63 - 1  # numpy, mlx and random all take it
Seed = Annotated[int, Strict(), Field(ge=0, le=SEED_MAX)]


class GeneratorSpec(_Strict):
    family: Literal["factual_recall", "ioi"]
    n: Int = Field(default=24, ge=4, le=5000)
    seed: Seed = 0


class SplitSpec(_Strict):
    held_out_fraction: Float = Field(default=0.5, gt=0.0, lt=1.0)
    # None: drawn privately per run (orchestrator.rundir), so knowing the generator does not reveal the held-out pairs.
    seed: Seed | None = None


class AgentSpec(_Strict):
    provider: Literal["builtin", "anthropic", "mlx"] = "builtin"
    model: str | None = None
    max_repairs: Int = Field(default=2, ge=0, le=10)


class Budgets(_Strict):
    max_experiments: Int = Field(default=20, ge=1, le=100_000)
    wall_clock_hours: Float = Field(default=0.25, gt=0.0, le=24 * 14)
    max_tokens: Int | None = Field(default=None, ge=0, le=10**12)
    max_dollars: Float | None = Field(default=None, ge=0.0, le=1_000_000)
    max_claims_per_experiment: Int = Field(default=4, ge=1, le=64)


class SandboxLimits(_Strict):
    timeout_s: Float = Field(default=300.0, ge=1.0, le=86_400)
    memory_gb: Float = Field(default=4.0, ge=0.25, le=1024)
    cpu_s: Float = Field(default=600.0, ge=1.0, le=864_000)


class Significance(_Strict):
    alpha: Float = Field(default=0.05, gt=0.0, lt=1.0)
    correction: Literal["holm", "bh"] = "holm"
    bootstrap: Int = Field(default=1000, ge=100, le=1_000_000)


class Task(_Strict):
    """A research task as written in the YAML file (after generator expansion, ``pairs`` is set)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    question: str = Field(min_length=1, max_length=4000)
    model: str = "smollm2-135m"
    pairs: list[PromptPair] | None = Field(default=None, min_length=4)
    generator: GeneratorSpec | None = None
    alignment: Literal["final_token"] | list[str] | None = None
    split: SplitSpec = Field(default_factory=SplitSpec)
    metric: Literal["logit_diff", "prob_correct", "kl"] = "logit_diff"
    agent: AgentSpec = Field(default_factory=AgentSpec)
    budgets: Budgets = Field(default_factory=Budgets)
    sandbox: SandboxLimits = Field(default_factory=SandboxLimits)
    significance: Significance = Field(default_factory=Significance)
    seed: Seed = 0
    notes: str = Field(default="", max_length=8000)

    @model_validator(mode="after")
    def _pairs_xor_generator(self) -> "Task":
        if self.pairs is None and self.generator is None:
            raise ValueError("give either `pairs:` (a list of prompt pairs) or `generator:` (family, n)")
        if self.pairs is not None and self.generator is not None:
            raise ValueError("give `pairs:` or `generator:`, not both")
        return self

    def all_pairs(self) -> list[PromptPair]:
        """The explicit pairs, expanding the generator if the file used one."""
        if self.pairs is not None:
            return list(self.pairs)
        assert self.generator is not None
        return FAMILIES[self.generator.family](self.generator.n, self.generator.seed)

    def split_pairs(self, seed: int | None = None) -> tuple[list[PromptPair], list[PromptPair]]:
        """(exploration, held_out): a shuffle seeded by ``seed`` or the task's split seed; held-out never seen by the agent."""
        seed = self.split.seed if seed is None else seed
        if seed is None:
            raise ValueError("the task has no split seed; pass the run's (orchestrator.rundir draws one privately)")
        pairs = self.all_pairs()
        order = list(range(len(pairs)))
        random.Random(seed).shuffle(order)
        n_held = max(1, min(len(pairs) - 1, round(len(pairs) * self.split.held_out_fraction)))
        held = sorted(order[:n_held])
        explore = sorted(order[n_held:])
        return [pairs[i] for i in explore], [pairs[i] for i in held]

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


_FIX_BY_TYPE = {
    "missing": "add it to the task file",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "string_type": "write a string (quote it if YAML reads it as something else)",
    "bool_parsing": "write true or false",
    "list_type": "write a YAML list (lines starting with '- ')",
    "dict_type": "write a YAML mapping (key: value lines)",
    "model_type": "write a YAML mapping (key: value lines)",
    "string_pattern_mismatch": "use lower-case letters, digits, '-' or '_' (e.g. factual-recall)",
}


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after[_pairs_xor_generator()]",) or str(part).startswith(("function-", "literal[")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Task
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        candidates = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
        candidates += [a for c in getattr(ann, "__args__", ()) for a in getattr(c, "__args__", ()) if isinstance(a, type)]
        nested = next((c for c in candidates if issubclass(c, BaseModel)), None)
        if nested is None:
            return []
        model = nested
    return sorted(model.model_fields)


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    where = _loc(loc)
    kind = err.get("type", "")
    got = err.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"allowed fields here: {', '.join(allowed)}"
        return f"{where}: unknown field; remove it ({hint})"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{where}: {got!r} is not allowed; use one of {expected}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "too_long"):
        return f"{where}: {err['msg'].lower()} (got {got!r}); change the value"
    fix = _FIX_BY_TYPE.get(kind, "fix the value")
    if kind in ("int_type", "float_type") and isinstance(got, (str, bool)):
        fix += (" (YAML read it as true/false)" if isinstance(got, bool) else
                " (YAML read it as text; write digits, e.g. 1000" + (" or 1.0e3, not 1e3)" if kind == "float_type" else ")"))
    shown = "" if kind == "missing" else f" (got {got!r})"
    return f"{where}: {err['msg']}{shown}; {fix}"


def parse_task(data: Any, source: str = "task") -> Task:
    """Validate a mapping as a Task; raise TaskError naming every bad field and its fix."""
    if not isinstance(data, dict):
        raise TaskError(f"{source}: the task file must be a YAML mapping of fields (name:, question:, ...)")
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors(include_url=False)]
        raise TaskError(f"{source}: invalid task file:\n  " + "\n  ".join(lines)) from None


def check_model(ref: str, base: Path | None = None) -> str:
    """The model reference as the engine will see it; TaskError listing what was tried if unknown."""
    if is_embedded(ref):
        return ref
    tried = [f"embedded alias (one of {', '.join(sorted(_aliases()))})"]
    for root in ([Path.cwd()] + ([base] if base else [])):
        path = (root / ref).expanduser() if not Path(ref).is_absolute() else Path(ref)
        if path.is_file() and path.suffix == ".gguf":
            return str(path.resolve())
        if path.is_dir() and (path / "config.json").is_file():
            return str(path.resolve())
        tried.append(f"{path} (" + ("exists, but is neither a .gguf file nor a directory with config.json" if path.exists() else "does not exist") + ")")
    raise TaskError(
        f"model: {ref!r} is not a known model. Tried: " + "; ".join(tried)
        + ". Fix: use 'smollm2-135m' (embedded), a directory with config.json, or a .gguf file path."
    )


def _aliases() -> frozenset[str]:
    from engine.loading.resolve import EMBEDDED_ALIASES

    return EMBEDDED_ALIASES


def check_tokens(task: Task, pairs: list[PromptPair], warm: bool = True) -> None:
    """One-token answers; equal prompt lengths unless the task declares an alignment."""
    try:
        tok = token_counter(task.model, warm)
    except TokenizerUnavailable as exc:
        raise TaskError(f"model: cannot check prompt lengths: {exc}") from None
    where = "pairs" if task.pairs is not None else f"generator ({task.generator.family if task.generator else ''})"
    first_len: int | None = None
    for i, pair in enumerate(pairs):
        for field in ("correct", "wrong"):
            n = tok.count(getattr(pair, field))
            if n != 1:
                raise TaskError(
                    f"{where}[{i}].{field}: {getattr(pair, field)!r} is {n} tokens; answers must be exactly one "
                    "token (usually a leading space and a common word, e.g. ' Paris')"
                )
        if pair.correct == pair.wrong:
            raise TaskError(f"{where}[{i}]: correct and wrong are both {pair.correct!r}; they must differ")
        if task.alignment is not None:
            continue
        n_clean, n_corr = tok.count(pair.clean), tok.count(pair.corrupted)
        if n_clean != n_corr:
            raise TaskError(
                f"{where}[{i}]: clean has {n_clean} tokens but corrupted has {n_corr} "
                f"({pair.clean!r} vs {pair.corrupted!r}); make them the same length or add "
                "`alignment: final_token` to the task"
            )
        if first_len is None:
            first_len = n_clean
        elif n_clean != first_len:
            raise TaskError(
                f"{where}[{i}]: prompts have {n_clean} tokens but pairs[0] has {first_len}; all pairs must "
                "have the same length to batch them, or add `alignment: final_token` to the task"
            )


def check_pairs(task: Task, pairs: list[PromptPair], source: str) -> None:
    """Prompts present and distinct, and a split that leaves at least 2 pairs on each side (a bootstrap
    over one pair is meaningless, and a prompt in both splits would leak held-out data)."""
    where = "pairs" if task.pairs is not None else "generator"
    seen: dict[str, int] = {}
    for i, pair in enumerate(pairs):
        for field in ("clean", "corrupted", "correct", "wrong"):
            if not getattr(pair, field).strip():
                raise TaskError(f"{source}: {where}[{i}].{field} is empty; write the prompt text (answers: one token, e.g. ' Paris')")
        if pair.clean in seen:
            raise TaskError(f"{source}: {where}[{i}].clean repeats {where}[{seen[pair.clean]}].clean ({pair.clean!r}); "
                            "each clean prompt may appear once (a repeat could land in both the exploration and held-out splits)")
        seen[pair.clean] = i
    n = len(pairs)
    n_held = max(1, min(n - 1, round(n * task.split.held_out_fraction)))
    if n_held < 2 or n - n_held < 2:
        raise TaskError(
            f"{source}: split.held_out_fraction: {task.split.held_out_fraction} of {n} pairs leaves {n_held} held out and "
            f"{n - n_held} for exploration; each side needs at least 2: use a fraction nearer 0.5 or more pairs")


def load_task(path: str | Path, *, check_tokenizer: bool = True, warm: bool = True) -> Task:
    """Read, validate and expand a task file; raise TaskError (never anything else) if it is unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskError(f"{path}: no such task file; check the path") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: cannot read the task file ({exc.__class__.__name__}); give a readable UTF-8 YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TaskError(f"{path}: not valid YAML{at}: {problem}; fix the syntax there") from None
    if data is None:
        raise TaskError(f"{path}: the task file is empty; see tasks/factual_recall.yaml for an example")
    task = parse_task(data, str(path))
    from orchestrator.contract import SUPPORTED_METRICS

    if task.metric not in SUPPORTED_METRICS:
        raise TaskError(f"{path}: metric: {task.metric!r} is not supported by the sandbox contract yet; use one of {list(SUPPORTED_METRICS)}")
    try:
        task = task.model_copy(update={"model": check_model(task.model, path.parent)})
    except TaskError as exc:
        raise TaskError(f"{path}: {exc}") from None
    try:
        pairs = task.all_pairs()
    except ValueError as exc:
        raise TaskError(f"{path}: generator.n: {exc}") from None
    if task.generator is not None and len(pairs) < 4:
        raise TaskError(f"{path}: generator.n: need at least 4 pairs")
    check_pairs(task, pairs, str(path))
    if check_tokenizer:
        try:
            check_tokens(task, pairs, warm)
        except TaskError as exc:
            raise TaskError(f"{path}: {exc}") from None
    return task
