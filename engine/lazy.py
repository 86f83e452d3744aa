"""Lazy package exports: names resolve to their module on first use, so light modules stay mlx-free."""

from __future__ import annotations

import importlib
from typing import Any


def lazy_attribute(package: str, exports: dict[str, str], name: str) -> Any:
    """The attribute ``name`` of ``package`` from its export table (a module when the table names one)."""
    module_name = exports.get(name)
    if module_name is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    module = importlib.import_module(module_name)
    return module if module_name == f"{package}.{name}" else getattr(module, name)
