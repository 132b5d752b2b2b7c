"""Data: sources, the raw snapshot, and the prepared (memory-mapped) training format."""
