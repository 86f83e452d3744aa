"""Plot-ready data that experiments return under ``measurements["figures"]`` and ``["feature_cards"]``.

Why validate here: results are written by agent code, so every figure is untrusted input. A figure
that does not fit the convention is skipped with a message saying what is wrong (never a crash of
the whole report), and sizes are capped so one experiment cannot blow up the report.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_FIGURES_PER_RESULT = 16
MAX_CARDS_PER_RESULT = 32
MAX_SIDE = 256  # rows/columns of a heatmap, bars of a bar chart, points of a line
MAX_SERIES = 12
MAX_NODES, MAX_EDGES = 200, 1000
MAX_TEXT = 300
PLOT_LIMIT = 1e12  # larger magnitudes are drawn as gaps (they overflow plotting maths); data tables keep them


def _short(value: Any, limit: int = MAX_TEXT) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: Any) -> float:
    """A plotted number; None/NaN/inf become NaN (drawn as a gap), anything else must be numeric."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {type(value).__name__} {str(value)[:30]!r}")
    x = float(value)
    return x if math.isfinite(x) else math.nan


def plottable(values: list[float]) -> list[float]:
    """Values as drawn: NaN (a gap) for anything missing or beyond ±PLOT_LIMIT."""
    return [v if math.isfinite(v) and abs(v) <= PLOT_LIMIT else math.nan for v in values]


def _vector(values: Any, what: str) -> list[float]:
    if not isinstance(values, list):
        raise ValueError(f"{what} must be a list of numbers")
    if len(values) > MAX_SIDE:
        raise ValueError(f"{what} has {len(values)} entries (at most {MAX_SIDE} are drawn)")
    return [_num(v) for v in values]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class GraphNode(_Lenient):
    id: str
    label: str = ""
    layer: float | None = None

    @field_validator("id", "label", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _short(v, 80)


class GraphEdge(_Lenient):
    source: str
    target: str
    weight: float = 1.0
    input: str = ""  # the receiver input an edge enters: "q", "k", "v" (drawn solid, dashed, dotted) or ""

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, v: Any) -> str:
        return v if v in ("q", "k", "v") else ""

    @field_validator("source", "target", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _short(v, 80)

    @field_validator("weight", mode="before")
    @classmethod
    def _weight(cls, v: Any) -> float:
        x = _num(1.0 if v is None else v)
        return 1.0 if math.isnan(x) else x


class FigureSpec(_Lenient):
    """One figure as the builtin programme's experiments describe it (see notes/CONTRACTS.md)."""

    type: Literal["heatmap", "bar", "line", "graph"]
    title: str = ""
    x_label: str = ""
    y_label: str = ""
    x_ticks: list[str] = Field(default_factory=list)
    y_ticks: list[str] = Field(default_factory=list)
    values: list[Any] | None = None
    series: dict[str, list[Any]] | None = None
    nodes: list[GraphNode] = Field(default_factory=list)
    edges: list[GraphEdge] = Field(default_factory=list)

    @field_validator("title", "x_label", "y_label", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _short(v)

    @field_validator("x_ticks", "y_ticks", mode="before")
    @classmethod
    def _ticks(cls, v: Any) -> list[str]:
        if v is None:
            return []
        if not isinstance(v, list):
            raise ValueError("ticks must be a list of labels")
        if len(v) > MAX_SIDE:
            raise ValueError(f"{len(v)} tick labels (at most {MAX_SIDE})")
        return [_short(t, 40) for t in v]

    @model_validator(mode="after")
    def _shape(self) -> "FigureSpec":
        if self.type == "heatmap":
            self._check_heatmap()
        elif self.type in ("bar", "line"):
            self._check_series()
        else:
            self._check_graph()
        return self

    def _check_heatmap(self) -> None:
        if not isinstance(self.values, list) or not self.values or not all(isinstance(r, list) for r in self.values):
            raise ValueError("a heatmap needs values as a non-empty list of rows (lists of numbers)")
        rows = [_vector(r, "a heatmap row") for r in self.values]
        if len(rows) > MAX_SIDE:
            raise ValueError(f"heatmap has {len(rows)} rows (at most {MAX_SIDE})")
        width = len(rows[0])
        if width == 0 or any(len(r) != width for r in rows):
            raise ValueError("heatmap rows must all have the same, non-zero length")
        if self.y_ticks and len(self.y_ticks) != len(rows):
            raise ValueError(f"{len(self.y_ticks)} y_ticks for {len(rows)} rows")
        if self.x_ticks and len(self.x_ticks) != width:
            raise ValueError(f"{len(self.x_ticks)} x_ticks for {width} columns")
        self.values = rows

    def _check_series(self) -> None:
        groups: dict[str, list[float]] = {}
        if self.values is not None:
            groups[""] = _vector(self.values, "values")
        for name, vals in (self.series or {}).items():
            groups[_short(name, 60)] = _vector(vals, f"series {name!r}")
        if not groups or not any(groups.values()):
            raise ValueError(f"a {self.type} chart needs values (a list of numbers) or series {{name: [numbers]}}")
        if len(groups) > MAX_SERIES:
            raise ValueError(f"{len(groups)} series (at most {MAX_SERIES})")
        lengths = {len(v) for v in groups.values()}
        if len(lengths) != 1:
            raise ValueError(f"series have different lengths {sorted(lengths)}")
        n = lengths.pop()
        if self.x_ticks and len(self.x_ticks) != n:
            raise ValueError(f"{len(self.x_ticks)} x_ticks for {n} values")
        self.values = groups.pop("", None)
        self.series = groups or None

    def _check_graph(self) -> None:
        if not self.nodes:
            raise ValueError("a graph needs nodes [{id, label, layer}]")
        if len(self.nodes) > MAX_NODES or len(self.edges) > MAX_EDGES:
            raise ValueError(f"graph too large ({len(self.nodes)} nodes, {len(self.edges)} edges)")
        ids = {n.id for n in self.nodes}
        if len(ids) != len(self.nodes):
            raise ValueError("graph node ids must be unique")
        unknown = sorted(({e.source for e in self.edges} | {e.target for e in self.edges}) - ids)
        if unknown:
            raise ValueError(f"edges name unknown nodes {unknown[:5]}")

    def groups(self) -> dict[str, list[float]]:
        """Bar/line data as named groups (the unnamed ``values`` group is called 'value')."""
        out: dict[str, list[float]] = {}
        if self.values is not None:
            out["value"] = list(self.values)
        out.update(self.series or {})
        return out


class ScoreBaseline(_Lenient):
    mean: float
    std: float


MAX_EXAMPLE_TOKENS = 128


class Example(_Lenient):
    """One top-activating example; a long one is cut to the window around its peak activation."""

    text: str = ""
    tokens: list[str] = Field(default_factory=list)
    activations: list[float] = Field(default_factory=list)

    @field_validator("text", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _short(v, 2000)

    @field_validator("tokens", mode="before")
    @classmethod
    def _tokens(cls, v: Any) -> list[str]:
        return [_short(t, 40) for t in v[:4096]] if isinstance(v, list) else v

    @field_validator("activations", mode="before")
    @classmethod
    def _acts(cls, v: Any) -> list[float]:
        return [0.0 if math.isnan(x := _num(a)) else x for a in v[:4096]] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _aligned(self) -> "Example":
        if self.activations and len(self.activations) != len(self.tokens):
            raise ValueError(f"{len(self.activations)} activations for {len(self.tokens)} tokens")
        if len(self.tokens) > MAX_EXAMPLE_TOKENS:
            peak = max(range(len(self.activations)), key=self.activations.__getitem__) if self.activations else 0
            start = max(0, min(peak - MAX_EXAMPLE_TOKENS // 2, len(self.tokens) - MAX_EXAMPLE_TOKENS))
            self.tokens = self.tokens[start:start + MAX_EXAMPLE_TOKENS]
            self.activations = self.activations[start:start + MAX_EXAMPLE_TOKENS]
        return self


class FeatureCard(_Lenient):
    """One SAE latent: its explanation, explanation scores against a random-explanation baseline, top examples.

    A score may be missing (None: that scorer did not run); it is shown as n/a.
    """

    latent: int
    explanation: str = ""
    scores: dict[str, float | None] = Field(default_factory=dict)
    baseline: dict[str, ScoreBaseline] = Field(default_factory=dict)
    top_examples: list[Example] = Field(default_factory=list, max_length=20)

    @field_validator("explanation", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _short(v, 2000)

    @field_validator("scores", mode="before")
    @classmethod
    def _scores(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[str, float | None] = {}
        for k, raw in list(v.items())[:32]:
            x = math.nan if raw is None else _num(raw)
            out[str(k)] = None if math.isnan(x) else x
        return out

    def z_score(self, name: str) -> float | None:
        """How many baseline standard deviations the score is above the random-explanation mean."""
        base = self.baseline.get(name)
        score = self.scores.get(name)
        if score is None or base is None or not base.std > 0:
            return None
        return (score - base.mean) / base.std


def graph_layers(spec: FigureSpec) -> dict[str, float]:
    """Each node's layer; nodes without one go below the sources (inputs) or above the sinks (logits)."""
    known = [n.layer for n in spec.nodes if n.layer is not None and math.isfinite(n.layer)]
    lo, hi = (min(known), max(known)) if known else (0.0, 0.0)
    has_out = {e.source for e in spec.edges}
    layers = {}
    for node in spec.nodes:
        if node.layer is not None and math.isfinite(node.layer):
            layers[node.id] = node.layer
        else:
            layers[node.id] = lo - 1 if node.id in has_out else hi + 1
    return layers


def _why(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}"


def parse_figures(measurements: dict[str, Any]) -> tuple[list[FigureSpec], list[str]]:
    """The valid figures of one result, and one message per figure that was skipped."""
    raw = measurements.get("figures")
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], ['measurements["figures"] is not a list of figure objects']
    figures, problems = [], []
    for i, item in enumerate(raw):
        if i >= MAX_FIGURES_PER_RESULT:
            problems.append(f"{len(raw) - i} more figures not drawn (at most {MAX_FIGURES_PER_RESULT} per experiment)")
            break
        try:
            figures.append(FigureSpec.model_validate(item))
        except ValidationError as exc:
            title = item.get("title") if isinstance(item, dict) else None
            problems.append(f"figure {i}{f' ({_short(title, 60)})' if title else ''} skipped: {_why(exc)}")
    return figures, problems


def parse_feature_cards(measurements: dict[str, Any]) -> tuple[list[FeatureCard], list[str]]:
    """The valid feature cards of one result, and one message per card that was skipped."""
    raw = measurements.get("feature_cards")
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], ['measurements["feature_cards"] is not a list of card objects']
    cards, problems = [], []
    for i, item in enumerate(raw[:MAX_CARDS_PER_RESULT]):
        try:
            cards.append(FeatureCard.model_validate(item))
        except ValidationError as exc:
            problems.append(f"feature card {i} skipped: {_why(exc)}")
    if len(raw) > MAX_CARDS_PER_RESULT:
        problems.append(f"{len(raw) - MAX_CARDS_PER_RESULT} more feature cards not shown")
    return cards, problems
