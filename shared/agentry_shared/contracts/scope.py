"""Who a message is about: carried by every message on the bus."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

Id = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")


class Scope(BaseModel):
    """Tenant, user and conversation: every query and every message is bounded by them."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str = Id
    user_id: str = Id
    conversation_id: str = Id
