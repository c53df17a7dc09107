"""Bundled training recipes (YAML) and the policies they gate with."""
