"""Benchmarks: scripts that bring the stack up on loopback and print figures and ratios."""
