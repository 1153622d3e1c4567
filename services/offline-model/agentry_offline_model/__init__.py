"""Agentry's offline model: an OpenAI-compatible server whose "model" is a handful of rules.

It exists so the whole system runs and is testable without model weights or a provider
account; point OPENAI_BASE_URL at a real model for real answers.
"""
