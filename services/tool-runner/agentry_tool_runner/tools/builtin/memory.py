"""Tools backed by the memory service: facts about the user and task progress, kept
across conversations. They run in the worker as one RPC each (no child process: they
execute no code of the model's and touch no file), scoped to the calling user."""

from __future__ import annotations

from typing import Literal

from agentry_shared.contracts.facts import ListTasks, RecallFacts, RememberFact, UpdateTask
from agentry_shared.contracts.scope import Scope
from pydantic import BaseModel, ConfigDict, Field

from agentry_tool_runner.tools.tool import Tool


class RememberParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fact: str = Field(min_length=1, max_length=1000, description="The fact, as a short sentence about the user.")
    category: Literal["preference", "decision", "task", "other"] = Field(
        default="other", description="preference, decision, task or other."
    )


class RecallParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(max_length=1000, description="Words to look for in what was remembered.")
    limit: int = Field(default=10, ge=1, le=50)


class TaskUpdateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200, description="The task's title.")
    status: Literal["open", "in_progress", "blocked", "done"] = "open"
    progress: str = Field(default="", max_length=2000, description="What was done or is next; empty keeps the last.")


class TaskListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_done: bool = False


def remember(scope: Scope, fact: str, category: str = "other") -> RememberFact:
    return RememberFact.model_validate({"scope": scope, "fact": fact, "category": category})


def recall(scope: Scope, query: str, limit: int = 10) -> RecallFacts:
    return RecallFacts(scope=scope, query=query, limit=limit)


def task_update(scope: Scope, task: str, status: str = "open", progress: str = "") -> UpdateTask:
    return UpdateTask.model_validate({"scope": scope, "task": task, "status": status, "progress": progress})


def task_list(scope: Scope, include_done: bool = False) -> ListTasks:
    return ListTasks(scope=scope, include_done=include_done)


_MODULE = __name__
TOOLS = [
    Tool(
        name="remember",
        description="Remember a fact about the user (a preference, a decision, task progress) for later "
        "conversations. Saying the same fact again refreshes it.",
        params=RememberParams,
        implementation=f"{_MODULE}:remember",
        side_effect="idempotent",
        backend="memory",
        requires_sandbox=False,
    ),
    Tool(
        name="recall",
        description="Look up facts remembered about the user, from any of their conversations.",
        params=RecallParams,
        implementation=f"{_MODULE}:recall",
        backend="memory",
        requires_sandbox=False,
    ),
    Tool(
        name="task_update",
        description="Create or update one of the user's tasks (status and progress), kept across conversations.",
        params=TaskUpdateParams,
        implementation=f"{_MODULE}:task_update",
        side_effect="idempotent",
        backend="memory",
        requires_sandbox=False,
    ),
    Tool(
        name="task_list",
        description="The user's open tasks with their status and progress.",
        params=TaskListParams,
        implementation=f"{_MODULE}:task_list",
        backend="memory",
        requires_sandbox=False,
    ),
]
