"""JSON schema of a tool's parameters, in the shape OpenAI-style function calling expects.

Pydantic's schema is close but carries `title`s (noise in the prompt, and some providers
reject them) and the model's docstring (written for developers, not for the model).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# Keys whose value maps names to schemas: the names are data, never schema keywords.
_NAMED_SCHEMAS = {"properties", "$defs", "patternProperties"}


def parameters_schema(model: type[BaseModel]) -> dict[str, Any]:
    """An object schema with `properties`, `required` and `additionalProperties: false`."""
    schema: dict[str, Any] = _strip_titles(model.model_json_schema())
    schema.pop("description", None)
    schema["type"] = "object"
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    schema["additionalProperties"] = False
    return schema


def _strip_titles(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key in _NAMED_SCHEMAS and isinstance(value, dict):
            cleaned[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            cleaned[key] = _strip_titles(value)
    return cleaned
