"""Describing tools: what a tool is, which tools exist, and the built-in ones."""
# Nothing else here: every child imports this package (for `failure`) inside the sandbox.
