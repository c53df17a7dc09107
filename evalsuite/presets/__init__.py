"""Suite presets shipped with evalsuite (``--suite <name>``)."""
