"""Agentry's memory service: sequences each conversation's event log and owns all stored state."""
