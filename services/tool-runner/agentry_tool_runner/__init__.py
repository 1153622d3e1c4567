"""Agentry's tool-runner.

Kept empty on purpose: every tool call's child process imports this package, so nothing
heavy may load here.
"""
