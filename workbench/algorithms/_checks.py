"""Argument checks shared by the algorithm modules. Torch-free: tensors are only asked for `.shape`.

Every failure is an `AlgorithmArgumentError`, which is both a `ValueError` (what callers of pure math
expect) and a `workbench.errors.UserError` (so the CLI and TUI show it without a traceback).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from workbench.errors import UserError


class AlgorithmArgumentError(UserError, ValueError):
    """A bad argument to an algorithm function or a bad preset field; the message names it.

    `field` is the argument or Variant field the error is about (None when it concerns no single one), so a
    caller that maps fields to its own keys (the recipe's `algorithm.<field>`) never parses the message.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def allowed_text(allowed: Iterable[Any]) -> str:
    return ", ".join(repr(value) for value in allowed)


def check_choice(argument: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise unless `value` is one of `allowed`, naming the argument and every allowed value."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise AlgorithmArgumentError(
            f"{argument}={value!r} is not allowed; allowed values: {allowed_text(allowed)}", field=argument
        )


def check_range(
    argument: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
) -> None:
    """Raise unless low <= value <= high (or low < value when low_inclusive is False)."""
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and value > high
    if too_low or too_high:
        lower = "" if low is None else f"{low} {'<=' if low_inclusive else '<'} "
        upper = "" if high is None else f" <= {high}"
        raise AlgorithmArgumentError(
            f"{argument}={value!r} is out of range; allowed values: {lower}{argument}{upper}", field=argument
        )


def check_group_size(num_responses: int, group_size: int, *, minimum: int = 1) -> int:
    """The number of groups B = N / G; raise when G is not a positive integer dividing N."""
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise AlgorithmArgumentError(f"group_size={group_size!r} must be an int >= {minimum}")
    if group_size < minimum:
        raise AlgorithmArgumentError(
            f"group_size={group_size} is out of range; allowed values: group_size >= {minimum}"
        )
    if num_responses % group_size != 0:
        raise AlgorithmArgumentError(
            f"group_size={group_size} does not divide the number of responses N={num_responses}; "
            "responses of one prompt must be contiguous groups of exactly group_size"
        )
    return num_responses // group_size


def check_ndim(argument: str, tensor: Any, ndims: tuple[int, ...], shape_text: str) -> None:
    if tensor.dim() not in ndims:
        raise AlgorithmArgumentError(f"{argument} has shape {tuple(tensor.shape)}; expected {shape_text}")


def check_same_shape(reference_name: str, reference: Any, **others: Any) -> None:
    """Raise when any of `others` (name=tensor) has a shape different from `reference`'s."""
    for name, tensor in others.items():
        if tensor is not None and tuple(tensor.shape) != tuple(reference.shape):
            raise AlgorithmArgumentError(
                f"{name} has shape {tuple(tensor.shape)}; expected the shape of {reference_name}, "
                f"{tuple(reference.shape)}"
            )


def check_floating(argument: str, tensor: Any) -> None:
    if not tensor.is_floating_point():
        raise AlgorithmArgumentError(f"{argument} has dtype {tensor.dtype}; expected a floating-point tensor")
