"""The SQLite run registry: the trainer writes it, the TUI and CLI read it live (docs/registry.md)."""

from workbench.registry.errors import RecordNotFound, RegistryBusy, RegistryError, RunNotFound
from workbench.registry.records import (
    GROUP_KINDS,
    STATUSES,
    TERMINAL_STATUSES,
    EventRecord,
    GroupRecord,
    ResponseRecord,
    RunInfo,
    TokenStats,
)
from workbench.registry.schema import SCHEMA_VERSION
from workbench.registry.store import Registry

__all__ = [
    "GROUP_KINDS",
    "SCHEMA_VERSION",
    "STATUSES",
    "TERMINAL_STATUSES",
    "EventRecord",
    "GroupRecord",
    "RecordNotFound",
    "Registry",
    "RegistryBusy",
    "RegistryError",
    "ResponseRecord",
    "RunInfo",
    "RunNotFound",
    "TokenStats",
]
