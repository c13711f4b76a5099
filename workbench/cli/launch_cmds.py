"""Commands: launch_cmds (being written)."""
