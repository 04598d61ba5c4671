"""Placeholder: the smp adapters land with issue 3."""
