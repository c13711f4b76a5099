"""Errors the registry raises for input a user can fix (a bad path, run id, key or step)."""

from __future__ import annotations

from workbench.errors import UserError


class RegistryError(UserError):
    """The registry file is missing, corrupt, not a registry, or a request names something absent."""


class RunNotFound(RegistryError):
    """No run has this id, or a prefix matches several runs (the message lists the candidates)."""


class RecordNotFound(RegistryError):
    """The run exists but has no record at this step, group, response or key."""


class RegistryBusy(RegistryError):
    """Another process held the write lock past the deadline (a long import, or a process that is frozen)."""
