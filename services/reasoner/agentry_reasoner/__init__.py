"""The reasoner: runs the agent loop of each turn (model, thinking, tools, budgets)."""
