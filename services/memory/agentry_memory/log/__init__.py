"""The conversation log: the per-partition consumer, the sequencer that gives frames their seq, dead letters."""
