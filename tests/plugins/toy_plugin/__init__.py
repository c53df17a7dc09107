"""A toy evalsuite plug-in: one corruption, one suite and one model format (see README.md)."""
