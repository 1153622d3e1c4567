"""Describing tools: what each is (`tool`), which exist (`registry`), the built-ins (`builtin/`).

Kept empty on purpose: every child imports this package (for `failure`) inside the
sandbox, where only the standard library exists.
"""
