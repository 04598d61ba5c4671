"""dsplug.data."""
