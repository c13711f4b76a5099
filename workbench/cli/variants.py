"""Commands: variants (being written)."""
