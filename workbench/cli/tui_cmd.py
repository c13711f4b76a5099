"""Commands: tui_cmd (being written)."""
