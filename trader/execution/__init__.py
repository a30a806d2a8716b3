"""The execution port in three modes (paper, shadow, live) and the write-ahead journal."""
