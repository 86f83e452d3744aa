"""Shared validation helpers: tool names, JSON extraction, repair messages that never echo values."""

from __future__ import annotations

from orchestrator.agent.llm import ExperimentModule
from orchestrator.agent.schemas import ExperimentCode, Plan, Reflection
from orchestrator.providers.validation import (
    extract_json_object,
    input_schema_for,
    schema_brief,
    tool_name_for,
    validate,
)


def test_tool_names_are_api_safe() -> None:
    assert tool_name_for(Plan) == "submit_plan"
    assert tool_name_for(ExperimentCode) == "submit_experiment_code"
    assert tool_name_for(ExperimentModule) == "submit_experiment_module"
    assert input_schema_for(Plan)["type"] == "object"


def test_validate_reports_fields_not_values() -> None:
    secretish = "VALUE-THAT-MUST-NOT-BE-ECHOED" * 10
    value, error = validate(Plan, {"hypothesis": "h", "method": "m", "falsification": "f", "slug": secretish})
    assert value is None and error and "slug" in error and "VALUE-THAT" not in error
    assert validate(Plan, '{"hypothesis": 1')[1].startswith("tool input is not a JSON object")
    assert "got list" in validate(Plan, [1, 2])[1]
    ok, err = validate(Reflection, {"decision": "keep", "reason": "r"})
    assert err is None and ok is not None and ok.decision == "keep"


def test_extract_json_object() -> None:
    assert extract_json_object('Sure! ```json\n{"a": {"b": [1, 2]}}\n```') == ({"a": {"b": [1, 2]}}, None)
    assert extract_json_object('{"a": [1, 2,],}', lenient=True) == ({"a": [1, 2]}, None)
    assert extract_json_object('{"a": 1,}')[0] is None
    assert "no JSON object" in (extract_json_object("no braces here")[1] or "")
    assert extract_json_object('[1] then {"k": "v"}') == ({"k": "v"}, None)


def test_schema_brief_names_required_fields_and_enums() -> None:
    brief = schema_brief(Reflection)
    assert '"decision" ("keep" | "discard", required)' in brief and '"reason"' in brief
    assert "pattern" in schema_brief(Plan)
