"""Operator and housekeeping work: the retention sweep and the admin command."""
