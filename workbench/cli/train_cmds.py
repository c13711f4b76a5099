"""Commands: train_cmds (being written)."""
