"""Message contracts: every model has a literal `kind` (bus) or `type` (WebSocket).

New fields always get defaults, so messages stored long ago still parse
(tests/contracts keeps golden samples).
"""
