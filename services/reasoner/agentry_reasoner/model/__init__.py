"""The model as the agent loop sees it: a stream of reasoning, text and finished tool calls.

`OpenAIModel` speaks to any OpenAI-compatible server through the official SDK, in every
server's dialect; `GuardedModel` adds retries, restarts, breakers and the fallback.
"""

from agentry_reasoner.model.guard import GuardedModel
from agentry_reasoner.model.items import (
    AnswerReset,
    ContextTooLong,
    HiddenReasoning,
    Model,
    ModelError,
    ModelUnavailable,
    ProviderStreamFailed,
    ReasoningDelta,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
)
from agentry_reasoner.model.openai_chat import OpenAIModel
from agentry_reasoner.model.options import ModelOptions

__all__ = [
    "AnswerReset",
    "ContextTooLong",
    "GuardedModel",
    "HiddenReasoning",
    "Model",
    "ModelError",
    "ModelOptions",
    "ModelUnavailable",
    "OpenAIModel",
    "ProviderStreamFailed",
    "ReasoningDelta",
    "StreamItem",
    "TextDelta",
    "ToolCall",
    "ToolCallsRequested",
]
