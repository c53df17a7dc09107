"""evalsuite."""
