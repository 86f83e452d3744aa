"""The engine guide: a concise reference of the engine's public API for the executor.

Why generated, and by parsing: the guide must track the engine as it changes (so it is built from
the engine's own docstrings and signatures), and the orchestrator process never imports mlx (so the
engine source is read with ``ast``, not imported). The public names are those engine/__init__.py
exports in ``_EXPORTS``; the experiment rules come from sandbox.guard (pure Python, no mlx).
"""

from __future__ import annotations

import ast
import functools
import textwrap
from dataclasses import dataclass
from pathlib import Path

ENGINE_ROOT = Path(__file__).resolve().parents[2] / "engine"
EXAMPLES_DIR = Path(__file__).resolve().parent / "guide_examples"
EXAMPLE_FILES = ("patch_resid_by_layer.py", "ablate_attn_by_layer.py")
CIRCUIT_EXAMPLES = ("circuit_eap_ig.py",)  # needs a real model (tested in the sandbox on a planted-circuit model)
# engine.circuits names the guide documents (the rest of its exports are results and internals of these)
CIRCUIT_NAMES = ("CircuitTask", "graph_of", "eap_ig", "eap", "compare_methods", "topk_mask", "faithfulness",
                 "circuit_metrics", "select_circuit", "grow_to_faithfulness", "circuit_from_mask", "bootstrap_jaccard",
                 "acdc", "Circuit")
CIRCUIT_DOC_LINES = 2
# Attributes set in __init__ that agents should use; everything else on these objects is internal.
PUBLIC_ATTRIBUTES = {"HookedModel": ("cfg",)}
MAX_DOC_LINES = 8

CONTRACT = '''\
## The experiment module contract
Write one Python module that defines `run(ctx)` and returns a dict:
```python
import engine   # also allowed: {allowed}
def run(ctx):
    ctx.model             # engine.HookedModel, already loaded
    ctx.pairs             # list of pairs with .clean, .corrupted, .correct, .wrong (exploration split only)
    ctx.clean_tokens      # token array [n_pairs, pos] (all pairs have equal length)
    ctx.corrupted_tokens  # token array [n_pairs, pos]
    ctx.correct_ids, ctx.wrong_ids   # list[int], one answer token per pair
    ctx.metric(logits)    # the contract metric per pair -> list[float] (higher = more like the clean answer)
    ctx.seed              # int
    return {{"summary": "one paragraph", "measurements": {{...JSON numbers/lists...}}, "claims": [claim, ...]}}
```
A claim is machine-checked later on held-out pairs by trusted code:
`{{"statement": str, "interventions": [intervention dicts], "target": "clean"|"corrupted", "source": "clean"|"corrupted",
"normalise": true, "expected_direction": "increase"|"decrease", "min_effect": float >= 0}}`.
Effect per pair = (metric(intervened target) - metric(target)) / (metric(clean) - metric(corrupted)) when normalise.
Intervention dicts are the models below with their `kind`, e.g. `{{"kind": "patch", "hook": "blocks.5.hook_resid_pre", "positions": [-1]}}`.
A circuit claim names edges instead of interventions (see engine.circuits below):
`{{"statement": str, "circuit": {{"edges": [edge names], "edge_scores": [floats], "method": "eap-ig"|"eap", "ig_steps": int,
"requested_size": k, "signed": bool}}, "expected_direction": "increase", "min_effect": faithfulness it must keep}}`.
The verifier re-measures it on held-out pairs: faithfulness per pair (CI lower bound must clear min_effect, never
below 0.5), random circuits of the same size (it must beat every one clearly), CPR/CMD of the method and the
bootstrap Jaccard of its circuit (at least 0.5).

Rules (a static guard rejects violations before anything runs): import only {allowed}; no attribute
starting with `_`; no {banned}; no file, network or process access; no mlx import (use engine methods
and numpy: `numpy.array(logits)` converts an engine array). Keep the work small: each forward pass costs
about a second on this machine, so prefer a few dozen forwards over hundreds.
'''


@dataclass(frozen=True)
class _Source:
    path: Path
    tree: ast.Module


@functools.lru_cache(maxsize=32)
def _parse(path: Path) -> _Source | None:
    try:
        return _Source(path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    except (OSError, SyntaxError):
        return None


def _doc(node: ast.AST, limit: int = MAX_DOC_LINES) -> str:
    doc = ast.get_docstring(node, clean=True) if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) else None
    if not doc:
        return ""
    lines = doc.strip().splitlines()
    return "\n".join(lines[:limit]) + ("\n..." if len(lines) > limit else "")


def _signature(fn: ast.FunctionDef, drop_self: bool) -> str:
    args = fn.args
    if drop_self and args.args and args.args[0].arg in ("self", "cls"):
        args = ast.arguments(posonlyargs=args.posonlyargs, args=args.args[1:], vararg=args.vararg,
                             kwonlyargs=args.kwonlyargs, kw_defaults=args.kw_defaults, kwarg=args.kwarg,
                             defaults=args.defaults[-len(args.args[1:]):] if args.args[1:] and args.defaults else [])
    ret = f" -> {ast.unparse(fn.returns)}" if fn.returns is not None else ""
    return f"{fn.name}({ast.unparse(args)}){ret}"


def _indent(text: str) -> str:
    return textwrap.indent(text, "    ") if text else ""


def _function(fn: ast.FunctionDef, prefix: str = "", drop_self: bool = False) -> str:
    doc = _doc(fn)
    return f"- `{prefix}{_signature(fn, drop_self)}`" + (f"\n{_indent(doc)}" if doc else "")


def _fields(cls: ast.ClassDef) -> list[str]:
    out = []
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and not node.target.id.startswith("_"):
            if node.target.id != "model_config":
                out.append(f"{node.target.id}: {ast.unparse(node.annotation)}{_default(node.value)}"[:200])
    return out


def _default(value: ast.expr | None) -> str:
    """' = 0' for plain defaults; for pydantic Field(...) the default and description only."""
    if value is None:
        return ""
    if isinstance(value, ast.Call) and ast.unparse(value.func) == "Field":
        kw = {k.arg: k.value for k in value.keywords if k.arg}
        default = value.args[0] if value.args else kw.get("default")
        text = f" = {ast.unparse(default)}" if default is not None and ast.unparse(default) != "..." else ""
        desc = kw.get("description")
        if isinstance(desc, ast.Constant) and isinstance(desc.value, str):
            text += f" ({desc.value})"
        return text
    return f" = {ast.unparse(value)}"


def _init_attributes(cls: ast.ClassDef) -> list[str]:
    """Documented public attributes assigned in __init__, typed by the class that builds them."""
    wanted = PUBLIC_ATTRIBUTES.get(cls.name, ())
    out = []
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            for stmt in ast.walk(node):
                if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Attribute)
                        and stmt.targets[0].attr in wanted):
                    value = stmt.value
                    if isinstance(value, ast.Call):
                        value = value.func.value if isinstance(value.func, ast.Attribute) else value.func
                    out.append(f"{stmt.targets[0].attr}: {ast.unparse(value)}")
    return out


def _class(cls: ast.ClassDef, prefix: str, tree: ast.Module) -> str:
    """Docstring, fields (including those of private base classes in the same module) and public methods."""
    public_bases = [ast.unparse(b) for b in cls.bases if not ast.unparse(b).startswith("_")]
    fields: list[str] = []
    for base in cls.bases:
        node = _find(tree, ast.unparse(base))
        if isinstance(node, ast.ClassDef) and node.name.startswith("_"):
            fields += _fields(node)
    fields += _fields(cls) + _init_attributes(cls)
    methods = []
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") and not node.decorator_list:
            methods.append(_function(node, prefix=".", drop_self=True))
    out = [f"### `{prefix}{cls.name}`" + (f" ({', '.join(public_bases)})" if public_bases else ""), _doc(cls)]
    if fields:
        out.append("Fields: " + "; ".join(f"`{f}`" for f in fields))
    out.extend(methods)
    return "\n".join(part for part in out if part)


def _find(tree: ast.Module, name: str) -> ast.AST | None:
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
    return None


def _module_functions(src: _Source, prefix: str) -> str:
    doc = _doc(src.tree, 3)
    fns = [_function(n, prefix) for n in src.tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    return "\n".join([f"### `{prefix.rstrip('.')}`", doc, *fns])


def exports(engine_root: Path = ENGINE_ROOT) -> dict[str, str]:
    """engine/__init__.py's ``_EXPORTS`` mapping (public name -> defining module), read without importing."""
    src = _parse(engine_root / "__init__.py")
    if src is None:
        return {}
    for node in src.tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "_EXPORTS" and node.value is not None:
            value = ast.literal_eval(node.value)
            return {str(k): str(v) for k, v in value.items()}
    return {}


def api_reference(engine_root: Path = ENGINE_ROOT) -> tuple[str, list[str]]:
    """(markdown, names that could not be documented) for every exported name."""
    sections: list[str] = []
    missing: list[str] = []
    for name, module in exports(engine_root).items():
        rel = Path(*module.split(".")[1:])
        src = _parse(engine_root / rel.with_suffix(".py")) or _parse(engine_root / rel / "__init__.py")
        if src is None:
            missing.append(name)
            continue
        if module.endswith("." + name):
            sections.append(_module_functions(src, f"engine.{name}."))
            continue
        node = _find(src.tree, name)
        if isinstance(node, ast.ClassDef):
            sections.append(_class(node, "engine.", src.tree))
        elif isinstance(node, ast.FunctionDef):
            sections.append(_function(node, "engine."))
        elif isinstance(node, ast.Assign):
            sections.append(f"- `engine.{name} = {ast.unparse(node.value)}`")
        else:
            missing.append(name)
    return "\n\n".join(sections), missing


def hook_reference(engine_root: Path = ENGINE_ROOT) -> str:
    src = _parse(engine_root / "hook_names.py")
    doc = ast.get_docstring(src.tree, clean=True) if src else None
    return doc or "Hook names follow TransformerLens: hook_embed, blocks.{L}.hook_resid_pre, ... (see DESIGN.md section 7)."


def _rules() -> tuple[str, str]:
    try:
        from sandbox.guard import ALLOWED_MODULES, BANNED_CALLS
    except ImportError:  # sandbox not installed: the documented defaults
        return ("engine, numpy, math, statistics, itertools, functools, collections, dataclasses, typing",
                "exec/eval/compile/open/getattr/globals")
    allowed = ", ".join(sorted(m for m in ALLOWED_MODULES if not m.startswith("__")))
    return allowed, "/".join(f"{c}()" for c in sorted(BANNED_CALLS))


def example_sources() -> dict[str, str]:
    return {name: (EXAMPLES_DIR / name).read_text(encoding="utf-8") for name in (*EXAMPLE_FILES, *CIRCUIT_EXAMPLES)}


def circuits_reference(engine_root: Path = ENGINE_ROOT) -> tuple[str, list[str]]:
    """(markdown, names not found) for the documented engine.circuits names, read from engine/circuits/__init__.py."""
    src = _parse(engine_root / "circuits" / "__init__.py")
    table: dict[str, str] = {}
    for node in src.tree.body if src else []:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "_EXPORTS":
            table = {str(k): str(v) for k, v in ast.literal_eval(node.value).items()}
    lines = ["### `engine.circuits` (edge-level circuits: `from engine import circuits`)",
             "Edges are named `<sender>-><receiver>`: senders `input`, `a{L}.h{h}` (a head), `m{L}` (an MLP); receivers "
             "`a{L}.h{h}<q>`, `a{L}.kv{g}<k>`, `a{L}.kv{g}<v>` (grouped-query k/v), `m{L}`, `logits`. Scores are the "
             "estimated metric change when the edge alone is patched to its corrupted value (negative = supports the "
             "clean answer); `absolute=False` ranks by that signed score. Results: `EdgeScores` (`.array()`, `.top(k)`, "
             "`.node_scores()`), `CircuitComparison` (`.get(method)` -> `.cpr`, `.cmd`, curves `.signed`/`.absolute` with "
             "`.requested_edges`, `.faithfulness`), `Stability` (`.jaccard_mean`), `Circuit` (`.edges`, `.edge_scores`)."]
    missing = []
    for name in CIRCUIT_NAMES:
        module = table.get(name)
        node_src = _parse(engine_root / Path(*module.split(".")[1:]).with_suffix(".py")) if module else None
        node = _find(node_src.tree, name) if node_src else None
        if isinstance(node, ast.FunctionDef):
            doc = _doc(node, CIRCUIT_DOC_LINES)
            lines.append(f"- `circuits.{_signature(node, False)}`" + (f"\n{_indent(doc)}" if doc else ""))
        elif isinstance(node, ast.ClassDef):
            methods = [n for n in node.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
            doc = _doc(node, CIRCUIT_DOC_LINES)
            lines.append(f"- `circuits.{name}`" + (f"\n{_indent(doc)}" if doc else "")
                         + ("\n    methods: " + ", ".join(f"`{m.name}`" for m in methods) if methods else ""))
        else:
            missing.append(name)
    return "\n".join(lines), missing


@functools.lru_cache(maxsize=4)
def build_engine_guide(engine_root: Path = ENGINE_ROOT, with_examples: bool = True) -> str:
    """The whole guide as markdown (cached per process; the engine does not change during a run)."""
    allowed, banned = _rules()
    reference, missing = api_reference(engine_root)
    parts = [
        "# Engine guide (generated from the engine's docstrings and signatures)",
        CONTRACT.format(allowed=allowed, banned=banned),
        "## Public API",
        reference,
    ]
    circuits, circuits_missing = circuits_reference(engine_root)
    parts.append(circuits)
    missing = [*missing, *(f"circuits.{n}" for n in circuits_missing)]
    if missing:
        parts.append("(not documented, module not found: " + ", ".join(missing) + ")")
    parts += ["## Hook names and shapes", "```\n" + hook_reference(engine_root) + "\n```"]
    if with_examples:
        parts.append("## Worked examples (all pass the guard and run in the sandbox)")
        for name, code in example_sources().items():
            parts.append(f"### {name}\n```python\n{code.strip()}\n```")
    return "\n\n".join(parts) + "\n"
