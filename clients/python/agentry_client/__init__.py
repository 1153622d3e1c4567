"""Agentry's Python client: a typed async client of the WebSocket API (docs/protocol.md)."""

from agentry_client.client import DEFAULT_URL, AgentryClient
from agentry_client.errors import AgentryError, ConnectionLost, ServerError, TurnFailed
from agentry_client.frames import Frame, TurnFrame, UnknownFrame, frame_dict, parse_frame
from agentry_client.turn import Turn

__all__ = [
    "DEFAULT_URL",
    "AgentryClient",
    "AgentryError",
    "ConnectionLost",
    "Frame",
    "ServerError",
    "Turn",
    "TurnFailed",
    "TurnFrame",
    "UnknownFrame",
    "frame_dict",
    "parse_frame",
]
