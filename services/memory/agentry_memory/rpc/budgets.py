"""Answers the turn budget requests: the gateway admits a turn before publishing it, the
reasoner reports the model tokens a turn used."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import assert_never

from agentry_shared.contracts.memory import AdmitTurn, Done, MemoryReply, RecordUsage, TurnAdmission

from agentry_memory.store import Store

log = logging.getLogger(__name__)

BudgetRequest = AdmitTurn | RecordUsage
BUDGET_REQUESTS = (AdmitTurn, RecordUsage)


async def answer_budget_request(store: Store, request: BudgetRequest, clock: Callable[[], float]) -> MemoryReply:
    match request:
        case AdmitTurn(scope=scope, turn_id=turn_id, budgets=budgets):
            admission = await store.admit_turn(scope, turn_id, budgets, clock())
            if not admission.allowed:
                log.info("turn over budget", extra={"limit": admission.limit, "user_id": scope.user_id})
            return TurnAdmission(
                allowed=admission.allowed,
                code=admission.code,
                limit=admission.limit,
                retry_after_seconds=admission.retry_after_seconds,
            )
        case RecordUsage(scope=scope, tokens=tokens):
            await store.record_usage(scope, tokens, clock())
            return Done()
    assert_never(request)
