"""The OpenAI-compatible endpoint (`/v1/models`, `/v1/chat/completions`): docs/openai.md."""
