"""Static AST guard: a fast, explainable lint run on an experiment file before it is executed.

The guard is NOT the security boundary (the OS sandbox in sandbox/isolation.py is); it exists so
that an agent gets an immediate, line-numbered message it can act on instead of a sandbox kill.
Every rejection names the line, what is wrong and what to do instead.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from sandbox.schemas import GuardIssue

MAX_SOURCE_BYTES = 100_000

# Top-level modules an experiment may import; submodules are allowed unless listed in BANNED_SUBMODULES.
ALLOWED_MODULES: frozenset[str] = frozenset(
    {"engine", "numpy", "math", "statistics", "itertools", "functools", "collections", "dataclasses", "typing",
     "__future__"}
)
# Only the engine's public API (engine/__init__ exports and these light modules).
ALLOWED_ENGINE_MODULES: frozenset[str] = frozenset(
    {"engine", "engine.metrics", "engine.interventions", "engine.circuits"}
)
BANNED_SUBMODULES: frozenset[str] = frozenset(
    {"numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing", "numpy.lib", "numpy.core", "numpy.ma",
     "numpy.rec", "numpy.char"}
)

BANNED_CALLS: dict[str, str] = {
    "exec": "run code directly instead of building it as a string",
    "eval": "compute the value directly instead of evaluating a string",
    "compile": "write the code directly",
    "open": "experiments do not read or write files; return data in the result dict",
    "getattr": "use ordinary attribute access (obj.name)",
    "setattr": "assign the attribute directly (obj.name = value) on your own objects",
    "delattr": "delete attributes only on your own objects with `del obj.name`",
    "globals": "pass values explicitly as function arguments",
    "locals": "pass values explicitly as function arguments",
    "vars": "use the object's public attributes",
    "__import__": "use a plain `import` of an allowed module at the top of the file",
    "breakpoint": "experiments run unattended; remove the breakpoint",
    "input": "experiments run unattended; there is no stdin",
    "help": "experiments run unattended; remove the call",
    "exit": "return from run(ctx) instead of exiting",
    "quit": "return from run(ctx) instead of exiting",
    "memoryview": "use numpy arrays",
}

# Attribute names that reach modules, frames or files (e.g. numpy.ctypeslib.ctypes, numpy.f2py.crackfortran.os,
# generator.gi_frame.f_globals). Any attribute starting with '_' is rejected separately.
BANNED_ATTRIBUTES: frozenset[str] = frozenset(
    {
        # modules reachable as attributes of allowed modules
        "os", "sys", "subprocess", "ctypes", "ctypeslib", "importlib", "builtins", "socket", "shutil", "pathlib",
        "io", "pickle", "marshal", "signal", "multiprocessing", "threading", "posix", "nt", "resource", "gc",
        "inspect", "types", "code", "codeop", "runpy", "pty", "fcntl", "mmap", "tempfile", "glob", "urllib",
        "http", "asyncio", "select", "selectors", "f2py", "distutils", "testing", "lib", "core", "sandbox",
        "orchestrator", "contract", "loading", "blas", "warm", "platform", "sysconfig", "site", "linecache",
        "traceback", "weakref", "copyreg", "shelve", "dbm", "sqlite3", "zipimport", "pkgutil", "ssl",
        "webbrowser", "ftplib", "smtplib", "telnetlib", "socketserver", "xmlrpc", "concurrent", "queue",
        # frame / code object walking
        "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "f_globals", "f_locals",
        "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "co_code", "co_consts", "func_globals",
        "mro", "with_traceback",
        # attribute access by string: operator.attrgetter("gi_frame"), string.Formatter().get_field(...)
        "operator", "attrgetter", "methodcaller", "Formatter", "get_field", "contextlib",
        # file and process I/O reachable from numpy / typing / engine objects
        "load", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt", "fromfile", "tofile",
        "memmap", "fromregex", "DataSource", "dump", "dumps", "system", "popen", "spawn", "fork",
        "get_type_hints", "ForwardRef", "evaluate_forward_ref", "get_annotations",
        # mlx file I/O reachable as engine.metrics.mx
        "save_safetensors", "save_gguf", "export_function", "import_function", "export_to_dot",
        # engine.circuits writes a model directory
        "build_planted_model",
    }
)
BANNED_IMPORT_ROOTS: frozenset[str] = frozenset({"sandbox", "orchestrator", "contract"})


def _allowed_list() -> str:
    return ", ".join(sorted(m for m in ALLOWED_MODULES if m != "__future__"))


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.issues: list[GuardIssue] = []

    def add(self, node: ast.AST, message: str) -> None:
        self.issues.append(GuardIssue(line=getattr(node, "lineno", 0), col=getattr(node, "col_offset", 0),
                                      message=message))

    # ---- imports ---------------------------------------------------------------------------
    def _check_module(self, node: ast.AST, module: str) -> bool:
        root = module.split(".")[0]
        if root in BANNED_IMPORT_ROOTS:
            self.add(node, f"import of '{module}' is not allowed: experiments may not touch the sandbox, the "
                           f"orchestrator or the contract; use only the ctx object passed to run(ctx)")
            return False
        if root not in ALLOWED_MODULES:
            self.add(node, f"import of '{module}' is not allowed; experiments may import only {_allowed_list()}")
            return False
        if root == "engine" and module not in ALLOWED_ENGINE_MODULES:
            self.add(node, f"import of '{module}' is not allowed: use the engine's public API "
                           f"({', '.join(sorted(ALLOWED_ENGINE_MODULES))})")
            return False
        parts = module.split(".")
        for i in range(2, len(parts) + 1):
            if ".".join(parts[:i]) in BANNED_SUBMODULES:
                self.add(node, f"import of '{module}' is not allowed (it reaches files, processes or C memory); "
                               f"use numpy's array functions instead")
                return False
        if module != "__future__" and any(p.startswith("_") for p in parts):
            self.add(node, f"import of private module '{module}' is not allowed; use public names only")
            return False
        return True

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.add(node, "relative imports are not allowed; import engine, numpy or the standard modules listed")
            return
        module = node.module or ""
        if not self._check_module(node, module):
            return
        for alias in node.names:
            if alias.name == "*":
                self.add(node, f"'from {module} import *' is not allowed; import the names you need explicitly")
            elif alias.name.startswith("_") and module != "__future__":
                self.add(node, f"importing private name '{alias.name}' from '{module}' is not allowed")
            elif alias.name in BANNED_ATTRIBUTES or f"{module}.{alias.name}" in BANNED_SUBMODULES:
                self.add(node, f"importing '{alias.name}' from '{module}' is not allowed (it reaches files, "
                               f"processes or interpreter internals)")
        self.generic_visit(node)

    # ---- names, attributes, calls ------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if node.id.startswith("__") and node.id.endswith("__") and node.id != "__name__":
            self.add(node, f"the name '{node.id}' is not allowed: interpreter internals are off limits; "
                           f"use the ctx object and ordinary values")
        elif node.id in BANNED_CALLS:
            self.add(node, f"'{node.id}' is not allowed: {BANNED_CALLS[node.id]}")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            self.add(node, f"attribute '.{node.attr}' is not allowed: names starting with '_' are private or "
                           f"interpreter internals; use the public API")
        elif node.attr in BANNED_ATTRIBUTES:
            self.add(node, f"attribute '.{node.attr}' is not allowed (it reaches modules, frames, files or "
                           f"processes); experiments compute on ctx.model and return data in the result dict")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and "__" in node.value:
            self.add(node, "string literals containing '__' are not allowed (they are used to reach interpreter "
                           "internals by name); rename the string")
        self.generic_visit(node)

    def _check_params(self, node: ast.AST, args: ast.arguments) -> None:
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and arg.arg.startswith("__") and arg.arg.endswith("__"):
                self.add(node, f"parameter name '{arg.arg}' is not allowed; use an ordinary name")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._check_def_name(node, node.name)
        self._check_params(node, node.args)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._check_params(node, node.args)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._check_def_name(node, node.name)
        for kw in node.keywords:
            if kw.arg == "metaclass":
                self.add(node, "metaclasses are not allowed; use a plain class or a dataclass")
        self.generic_visit(node)

    def _check_def_name(self, node: ast.AST, name: str) -> None:
        if name.startswith("__") and name.endswith("__") and name not in ("__init__", "__repr__", "__eq__",
                                                                          "__lt__", "__len__", "__iter__"):
            self.add(node, f"defining '{name}' is not allowed; use an ordinary method name")

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for attr in node.kwd_attrs:
            if attr.startswith("_") or attr in BANNED_ATTRIBUTES:
                self.add(node, f"class pattern attribute '{attr}' is not allowed; match on public attributes")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.add(node, "'global' is not allowed; keep state in local variables or return it")

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg is not None and node.arg.startswith("__"):
            self.add(node, f"keyword argument '{node.arg}' is not allowed")
        self.generic_visit(node)


def _has_run(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == "run" and n.args.args for n in tree.body)


def check_source(source: str | bytes, filename: str = "<experiment>") -> list[GuardIssue]:
    """All guard issues in ``source`` (an empty list means the file may run)."""
    raw = source.encode("utf-8", "surrogateescape") if isinstance(source, str) else source
    if len(raw) > MAX_SOURCE_BYTES:
        return [GuardIssue(line=1, message=f"the file is {len(raw)} bytes; the limit is {MAX_SOURCE_BYTES}: "
                                           f"split the work into smaller experiments")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [GuardIssue(line=1, message=f"the file is not valid UTF-8 ({exc.reason} at byte {exc.start})")]
    if "\x00" in text:
        return [GuardIssue(line=1, message="the file contains a NUL byte; write plain Python source")]
    try:
        tree = ast.parse(text, filename=filename)
    except SyntaxError as exc:
        return [GuardIssue(line=exc.lineno or 1, col=exc.offset or 0, message=f"syntax error: {exc.msg}")]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [GuardIssue(line=1, message=f"the file cannot be parsed ({type(exc).__name__}); simplify it")]
    checker = _Checker()
    try:
        checker.visit(tree)
    except RecursionError:
        return [GuardIssue(line=1, message="the code is nested too deeply to check; flatten it")]
    issues = checker.issues
    if not _has_run(tree):
        issues.append(GuardIssue(line=1, message="the experiment must define a top-level function `def run(ctx):` "
                                                 "that returns a dict with 'summary', 'measurements', 'claims'"))
    return sorted(issues, key=lambda i: (i.line, i.col))


def check_file(path: Path) -> list[GuardIssue]:
    """Guard issues for an experiment file (reads at most MAX_SOURCE_BYTES + 1 bytes)."""
    with open(path, "rb") as fh:
        raw = fh.read(MAX_SOURCE_BYTES + 1)
    if len(raw) > MAX_SOURCE_BYTES:
        return [GuardIssue(line=1, message=f"the file is larger than {MAX_SOURCE_BYTES} bytes: split the work "
                                           f"into smaller experiments")]
    return check_source(raw, filename=path.name)


def format_issues(issues: Iterable[GuardIssue], limit: int = 20) -> str:
    """One line per issue, for the executor to read and repair the file."""
    items = list(issues)
    lines = [str(i) for i in items[:limit]]
    if len(items) > limit:
        lines.append(f"... and {len(items) - limit} more issues")
    return "\n".join(lines)
