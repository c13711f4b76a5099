"""Small records and a hand-moved clock for the registry tests."""

from __future__ import annotations

import math

from workbench.registry import GroupRecord, ResponseRecord, TokenStats


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def token_stats(tokens: list[str], ratio_offset: float = 0.0) -> TokenStats:
    count = len(tokens)
    return TokenStats(
        tokens=tokens,
        logp_old=[-0.5 - 0.1 * i for i in range(count)],
        logp_new=[-0.45 - 0.1 * i for i in range(count)],
        ratio=[1.0 + ratio_offset + 1e-4 * i for i in range(count)],
        entropy=[0.25 * (i % 4) for i in range(count)],
        clipped_low=[i % 3 == 0 for i in range(count)],
        clipped_high=[i % 5 == 1 for i in range(count)],
    )


def group(index: int = 0, rewards: tuple[float, ...] = (1.0, 0.0), kind: str = "train", with_tokens: bool = True) -> GroupRecord:
    responses = []
    for position, reward in enumerate(rewards):
        tokens = ["4", "2", " is", f" r{position}"]
        responses.append(
            ResponseRecord(
                text="".join(tokens),
                reward=reward,
                reward_components={"correct": reward},
                advantage=reward - 0.5,
                length=len(tokens),
                truncated=position == 1,
                dropped_by="gfpo" if position == 1 else None,
                tokens=token_stats(tokens) if with_tokens else None,
            )
        )
    return GroupRecord(index=index, prompt=f"prompt {index}", responses=responses, answer="42", kind=kind)


def assert_close_lists(actual: list[float], expected: list[float], tolerance: float) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert math.isclose(got, want, rel_tol=tolerance, abs_tol=tolerance), (got, want)


def older_registry(path, version: int):
    """A registry file as workbench wrote it at schema `version` (its tables, nothing in them), open as
    a sqlite-utils Database for the test to fill and close."""
    from sqlite_utils import Database

    from workbench.registry.schema import migrate

    old = Database(path)
    old.conn.isolation_level = None
    old.conn.execute("BEGIN")
    migrate(old, 0, to_version=version)
    old.conn.execute("COMMIT")
    return old
