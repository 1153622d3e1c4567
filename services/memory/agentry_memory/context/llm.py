"""The summary model over an OpenAI-compatible endpoint (the official SDK, like the reasoner).

The request follows the offline model's summarisation contract, which a real model reads
as plain instructions too: the prompt as the first system message, then one user message
holding the previous summary (a `Summary:` line) and the transcript.

A reasoning model's thinking is no part of the summary: a separate reasoning field is
never read, and thinking left inline in `content` (a server without a reasoning parser)
is cut out, as the reasoner does for its answers.

Each request is a `chat <model>` CLIENT span (the reasoner's kind, marked
`agentry.model.purpose=summary`) whose context rides the request's `traceparent` header:
the refresh runs in the context of the `GetContext` that scheduled it, so the summary
call shows in the trace of the turn that asked for that context, and the model server's
span under it; that turn's id rides along (`tracing.TURN_ID_HEADER`) for the server's logs.
"""

from __future__ import annotations

import re

from agentry_shared.logs import bound_id
from agentry_shared.tracing import model_call, model_headers, record_usage
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from agentry_memory.context.tokens import count_tokens

SUMMARY_PROMPT = (
    "Summarize the conversation below for your future self. Keep facts, decisions and open tasks; "
    "drop small talk. Reply with the summary only, in at most {words} words."
)

# `<think>…</think>` and `<thinking>…</thinking>`; a closing tag alone (the chat template
# opened it) ends thinking that began with the reply; an opening tag alone (cut off) starts
# thinking that runs to the end.
THOUGHT = re.compile(r"<(think|thinking)>.*?</\1>", re.DOTALL)
CLOSING = re.compile(r"^.*</(?:think|thinking)>", re.DOTALL)
OPENING = re.compile(r"<(?:think|thinking)>.*$", re.DOTALL)


def without_thinking(text: str) -> str:
    return OPENING.sub("", CLOSING.sub("", THOUGHT.sub("", text))).strip()


class OpenAISummaryModel:
    def __init__(self, base_url: str, api_key: str, model: str, timeout: float, max_words: int = 300) -> None:
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=1)
        self.model = model
        self.max_words = max_words

    async def summarize(self, previous: str | None, transcript: str) -> str:
        lines = []
        if previous:
            flat = " ".join(previous.split())
            lines.append(flat if flat.lower().startswith("summary:") else f"Summary: {flat}")
        lines.append(transcript)
        system = SUMMARY_PROMPT.format(words=self.max_words)
        user = "\n".join(lines)
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        with model_call(self.model) as span:
            span.set_attribute("agentry.model.purpose", "summary")
            response = await self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                stream=False,
                extra_headers=model_headers(bound_id("turn_id")) or None,
            )
            content = response.choices[0].message.content if response.choices else None
            usage = response.usage
            if usage is not None:
                record_usage(span, usage.prompt_tokens, usage.completion_tokens)
            else:
                estimate = count_tokens(system) + count_tokens(user)
                record_usage(span, estimate, count_tokens(content or ""), estimated=True)
        text = without_thinking(content) if content else None
        if not text or not text.strip():
            raise ValueError("the model answered the summary request with no text")
        return text.strip()

    async def close(self) -> None:
        await self.client.close()
