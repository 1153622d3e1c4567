"""Answers the fact and task requests (`agentry_shared.contracts.facts`): the memory side of the
`remember`, `recall`, `task_update` and `task_list` tools."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

from agentry_shared.contracts.facts import (
    FactRemembered,
    FactReply,
    FactRequest,
    FactsRecalled,
    FactView,
    ListTasks,
    RecallFacts,
    RememberFact,
    TaskList,
    TaskUpdated,
    TaskView,
    UpdateTask,
)

from agentry_memory.store import Store
from agentry_memory.store.records import Fact, Task

FACT_REQUESTS = (RememberFact, RecallFacts, UpdateTask, ListTasks)


async def answer_fact_request(store: Store, request: FactRequest, clock: Callable[[], float]) -> FactReply:
    match request:
        case RememberFact(scope=scope, turn_id=turn_id, fact=text, category=category):
            fact, created = await store.remember_fact(scope, turn_id, text, category, clock())
            return FactRemembered(fact=fact_view(fact), created=created)
        case RecallFacts(scope=scope, query=query, limit=limit):
            return FactsRecalled(facts=[fact_view(f) for f in await store.recall_facts(scope, query, limit)])
        case UpdateTask(scope=scope, turn_id=turn_id, task=title, status=status, progress=progress):
            task, created = await store.update_task(scope, turn_id, title, status, progress, clock())
            return TaskUpdated(task=task_view(task), created=created)
        case ListTasks(scope=scope, include_done=include_done, limit=limit):
            return TaskList(tasks=[task_view(t) for t in await store.tasks(scope, include_done, limit)])
    assert_never(request)


def fact_view(fact: Fact) -> FactView:
    return FactView(
        fact_id=fact.fact_id,
        fact=fact.text,
        category=fact.category,
        conversation_id=fact.conversation_id,
        turn_id=fact.turn_id,
        created_at=fact.created_at,
        confirmed_at=fact.confirmed_at,
    )


def task_view(task: Task) -> TaskView:
    return TaskView(
        task_id=task.task_id,
        task=task.title,
        status=task.status,
        progress=task.progress,
        conversation_id=task.conversation_id,
        turn_id=task.turn_id,
        created_at=task.created_at,
        updated_at=task.updated_at,
    )
