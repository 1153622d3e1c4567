"""The summary model over an OpenAI-compatible endpoint (the official SDK, like the reasoner).

The request follows the offline model's summarisation contract, which a real model reads
as plain instructions too: the prompt as the first system message, then one user message
holding the previous summary (a `Summary:` line) and the transcript.

A reasoning model's thinking is no part of the summary: a separate reasoning field is
never read, and thinking left inline in `content` (a server without a reasoning parser)
is cut out, as the reasoner does for its answers.
"""

from __future__ import annotations

import re

from openai import AsyncOpenAI

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
        response = await self.client.chat.completions.create(
            model=self.model,
            messages=[
                {"role": "system", "content": SUMMARY_PROMPT.format(words=self.max_words)},
                {"role": "user", "content": "\n".join(lines)},
            ],
            stream=False,
        )
        content = response.choices[0].message.content if response.choices else None
        text = without_thinking(content) if content else None
        if not text or not text.strip():
            raise ValueError("the model answered the summary request with no text")
        return text.strip()

    async def close(self) -> None:
        await self.client.close()
