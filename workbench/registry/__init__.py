"""The SQLite run registry: the trainer writes it, the TUI and CLI read it live (docs/registry.md).

`Registry` (the writer) extends `RegistryReader` (what the UI opens: a read-only connection); both are
assembled in store.py from one module per kind of record: runs, metrics (steps, metric keys and
series), groups (sampled groups and their token stats), events, liveness, over connection.py.
"""

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
from workbench.registry.store import Registry, RegistryReader

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
    "RegistryReader",
    "RegistryError",
    "ResponseRecord",
    "RunInfo",
    "RunNotFound",
    "TokenStats",
]
