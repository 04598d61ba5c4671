"""dsplug.train."""
