"""dsplug.losses."""
