"""RPCs for remembered facts and task progress: what the `remember` / `recall` / task tools
of the tool-runner call on the memory service.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from agentry_shared.contracts.memory import MemoryFailure
from agentry_shared.contracts.scope import Scope

FactCategory = Literal["preference", "decision", "task", "other"]
TaskStatus = Literal["open", "in_progress", "blocked", "done"]


class RememberFact(BaseModel):
    """Store a fact about the user, or refresh the near-identical one already kept."""

    kind: Literal["memory.remember_fact"] = "memory.remember_fact"
    scope: Scope
    turn_id: str | None = None  # the turn it came from
    fact: str = Field(min_length=1, max_length=1000)
    category: FactCategory = "other"


class RecallFacts(BaseModel):
    """The user's facts that best match `query` (all conversations); the most recently
    confirmed ones when the query has no searchable word."""

    kind: Literal["memory.recall_facts"] = "memory.recall_facts"
    scope: Scope
    query: str = Field(default="", max_length=1000)
    limit: int = Field(default=10, ge=1, le=50)


class UpdateTask(BaseModel):
    """Create or update a task of the user, by title (near-identical titles are one task)."""

    kind: Literal["memory.update_task"] = "memory.update_task"
    scope: Scope
    turn_id: str | None = None
    task: str = Field(min_length=1, max_length=200)
    status: TaskStatus = "open"
    progress: str = Field(default="", max_length=2000)


class ListTasks(BaseModel):
    kind: Literal["memory.list_tasks"] = "memory.list_tasks"
    scope: Scope
    include_done: bool = False
    limit: int = Field(default=20, ge=1, le=100)


FactRequest = Annotated[RememberFact | RecallFacts | UpdateTask | ListTasks, Field(discriminator="kind")]
FACT_REQUEST: TypeAdapter[FactRequest] = TypeAdapter(FactRequest)


class FactView(BaseModel):
    fact_id: str
    fact: str
    category: FactCategory
    conversation_id: str | None = None
    turn_id: str | None = None
    created_at: float
    confirmed_at: float


class TaskView(BaseModel):
    task_id: str
    task: str
    status: TaskStatus
    progress: str = ""
    conversation_id: str | None = None
    turn_id: str | None = None
    created_at: float
    updated_at: float


class FactRemembered(BaseModel):
    kind: Literal["memory.fact_remembered"] = "memory.fact_remembered"
    fact: FactView
    created: bool  # False: a near-identical fact was refreshed instead


class FactsRecalled(BaseModel):
    kind: Literal["memory.facts_recalled"] = "memory.facts_recalled"
    facts: list[FactView]


class TaskUpdated(BaseModel):
    kind: Literal["memory.task_updated"] = "memory.task_updated"
    task: TaskView
    created: bool


class TaskList(BaseModel):
    kind: Literal["memory.tasks"] = "memory.tasks"
    tasks: list[TaskView]


FactReply = Annotated[
    FactRemembered | FactsRecalled | TaskUpdated | TaskList | MemoryFailure, Field(discriminator="kind")
]
FACT_REPLY: TypeAdapter[FactReply] = TypeAdapter(FactReply)
