from __future__ import annotations

import importlib

import pytest
from agentry_tool_runner.main import served_pools
from agentry_tool_runner.tools.registry import REGISTRY, Registry, Tool
from agentry_tool_runner.tools.schema import parameters_schema
from pydantic import BaseModel, ConfigDict, Field, ValidationError


def test_calculator_descriptor_is_an_openai_function_schema() -> None:
    tool = REGISTRY.get("calculator")
    assert tool is not None
    descriptor = tool.descriptor()
    assert descriptor.side_effect == "read_only"
    assert descriptor.pool == "default"
    assert descriptor.parameters == {
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "minLength": 1,
                "maxLength": 500,
                "description": "Arithmetic expression, e.g. '(3 + 4) * 2 ** 10 / 7' or 'sqrt(2) * pi'.",
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    }


def test_optional_parameter_is_not_required() -> None:
    tool = REGISTRY.get("current_time")
    assert tool is not None
    schema = tool.descriptor().parameters
    assert schema["required"] == []
    assert schema["additionalProperties"] is False
    assert {"type": "null"} in schema["properties"]["timezone"]["anyOf"]


def test_titles_are_stripped_but_a_property_named_title_is_kept() -> None:
    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        value: int

    class Params(BaseModel):
        """Developer notes that must not reach the model."""

        model_config = ConfigDict(extra="forbid")
        title: str = Field(description="a page title")
        inner: Inner

    schema = parameters_schema(Params)
    assert "title" not in schema and "description" not in schema
    assert schema["properties"]["title"] == {"type": "string", "description": "a page title"}
    assert schema["$defs"]["Inner"] == {
        "type": "object",
        "properties": {"value": {"type": "integer"}},
        "required": ["value"],
        "additionalProperties": False,
    }


def test_every_registered_implementation_resolves() -> None:
    assert len(REGISTRY) >= 2
    for tool in REGISTRY:
        module, _, function = tool.implementation.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), tool.name


def test_validation_forbids_extra_arguments() -> None:
    tool = REGISTRY.get("calculator")
    assert tool is not None
    assert tool.validate_arguments({"expression": "1+1"}) == {"expression": "1+1"}
    with pytest.raises(ValidationError):
        tool.validate_arguments({"expression": "1", "shell": "rm -rf /"})
    with pytest.raises(ValidationError):
        tool.validate_arguments({"expression": "1" * 501})


def test_tool_definitions_are_checked() -> None:
    class Loose(BaseModel):
        x: int

    with pytest.raises(ValueError, match="extra='forbid'"):
        Tool(name="loose", description="", params=Loose, implementation="m:f")
    calculator = REGISTRY.get("calculator")
    assert calculator is not None
    with pytest.raises(ValueError, match="implementation"):
        Tool(name="bad", description="", params=calculator.params, implementation="not a path")
    with pytest.raises(ValueError, match="two tools"):
        Registry([calculator, calculator])


def test_served_pools() -> None:
    assert REGISTRY.pools() == ["default", "network", "sandbox"]
    assert served_pools("", REGISTRY) == ["default", "network", "sandbox"]
    assert served_pools(" gpu, default ,gpu", REGISTRY) == ["default", "gpu"]
