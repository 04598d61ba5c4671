"""Placeholder: the MONAI adapters land with issue 3."""
