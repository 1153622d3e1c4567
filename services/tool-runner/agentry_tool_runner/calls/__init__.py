"""The life of a call: claim it in memory, decide, run it once, record, reply, hear cancels."""
