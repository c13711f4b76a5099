"""The training process: `python -m workbench.train ...` (see docs/internals.md "The trainer process").

Nothing imports this package; it runs as its own process and writes to the registry.
"""
