"""dsplug.tied."""
