"""Validation shared by all providers: schema → tool / prompt text, output → model or a repair message.

The repair message is what the model sees after an invalid answer, so it is short, names each
failing field and never echoes large inputs back (which would waste tokens and could leak text).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

MAX_ERROR_CHARS = 2000


def tool_name_for(schema: type[BaseModel]) -> str:
    """``submit_plan`` for Plan, ``submit_experiment_code`` for ExperimentCode (API: ^[a-zA-Z0-9_-]{1,64}$)."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", schema.__name__.lstrip("_")).lower()
    return ("submit_" + re.sub(r"[^a-z0-9_]", "_", snake))[:64]


def input_schema_for(schema: type[BaseModel]) -> dict[str, Any]:
    """The pydantic JSON schema as a tool input_schema (an object schema, as the API requires)."""
    js = schema.model_json_schema()
    js.setdefault("type", "object")
    return js


def format_validation_error(exc: ValidationError) -> str:
    """One line per failing field, without the (possibly huge) input values."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        lines.append(f"- {loc}: {err.get('msg', 'invalid')}")
    text = f"{exc.error_count()} validation error(s):\n" + "\n".join(lines)
    return text[:MAX_ERROR_CHARS]


def validate(schema: type[M], data: Any) -> tuple[M | None, str | None]:
    """(value, None) when ``data`` fits ``schema``, else (None, a message for a repair turn)."""
    if isinstance(data, str):  # some models put a JSON string where an object belongs
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            return None, f"tool input is not a JSON object: {exc.msg} at position {exc.pos}"
    if not isinstance(data, dict):
        return None, f"tool input must be a JSON object with the schema's fields, got {type(data).__name__}"
    try:
        return schema.model_validate(data), None
    except ValidationError as exc:
        return None, format_validation_error(exc)
    except (ValueError, TypeError) as exc:  # raised by custom validators outside pydantic's wrapping
        return None, f"invalid output: {str(exc)[:MAX_ERROR_CHARS]}"


def extract_json_object(text: str, *, lenient: bool = False) -> tuple[Any, str | None]:
    """The first JSON object in free text (models wrap JSON in prose or code fences), or an error.

    ``lenient`` also accepts trailing commas (a common small-model slip); the result is still
    validated against the schema, so leniency never lets a wrong value through.
    """
    candidates = [text]
    if lenient:
        fixed = re.sub(r",(\s*[}\]])", r"\1", text)
        if fixed != text:
            candidates.append(fixed)
    first_error: str | None = None
    for candidate in candidates:
        obj, error = _first_object(candidate)
        if error is None:
            return obj, None
        first_error = first_error or error
    return None, first_error


def _first_object(text: str) -> tuple[Any, str | None]:
    decoder = json.JSONDecoder()
    first_error: str | None = None
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError as exc:
            first_error = first_error or f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
            continue
        if isinstance(obj, dict):
            return obj, None
    if first_error:
        return None, f"no valid JSON object found; the first '{{' did not parse: {first_error}"
    return None, "no JSON object found in the reply: answer with a single JSON object"


def schema_brief(schema: type[BaseModel]) -> str:
    """A compact field list for prompting models without tool use (small local models)."""
    js = schema.model_json_schema()
    required = set(js.get("required", []))
    lines = []
    for name, prop in js.get("properties", {}).items():
        typ = prop.get("type") or " | ".join(str(a.get("type", a.get("$ref", "?"))) for a in prop.get("anyOf", [])) or "any"
        if "enum" in prop:
            typ = " | ".join(json.dumps(v) for v in prop["enum"])
        if "const" in prop:
            typ = json.dumps(prop["const"])
        extra = []
        if "pattern" in prop:
            extra.append(f"pattern {prop['pattern']}")
        if prop.get("description"):
            extra.append(prop["description"])
        flag = "required" if name in required else "optional"
        lines.append(f'- "{name}" ({typ}, {flag})' + (": " + "; ".join(extra) if extra else ""))
    return "\n".join(lines)
