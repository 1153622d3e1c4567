"""Agentry's gateway: holds client WebSockets, publishes user turns, fans frames back out."""
