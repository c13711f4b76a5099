"""Fixtures of the experiment tests: the remote tests' real sshd on loopback and its two-sided world
(tests/remote/conftest.py), for the sweep across an SSH host and local slots."""

from __future__ import annotations

from tests.remote.conftest import sshd, world  # noqa: F401  (fixtures)
