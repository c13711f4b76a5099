"""Commands: registry_cmds (being written)."""
