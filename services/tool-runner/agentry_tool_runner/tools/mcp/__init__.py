"""Tools from MCP servers: their configuration, their catalog entries and the connections
the worker keeps to them (docs/tools.md, "MCP servers")."""
