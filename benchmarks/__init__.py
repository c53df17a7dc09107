"""Side-by-side speed benchmarks (reference vs evalsuite in one process)."""
