"""The shapes the trainer writes and the TUI and CLI read back (see docs/internals.md).

Responses, groups and token stats are plain dataclasses so the trainer can build them step by step;
`RunInfo` is a frozen snapshot of one row of the runs table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

# unresponsive: running, but its heartbeat is stale while its process lives (stopped, stuck); not an end.
STATUSES: tuple[str, ...] = ("queued", "running", "unresponsive", "finished", "failed", "crashed", "stopped")
TERMINAL_STATUSES: frozenset[str] = frozenset({"finished", "failed", "crashed", "stopped"})
GROUP_KINDS: tuple[str, ...] = ("train", "eval")
DROP_FILTERS: tuple[str, ...] = ("dynamic_sampling", "gfpo")


@dataclass
class EpochTokens:
    """The ratio and clip flags one earlier epoch's loss saw for a response's tokens [T]."""

    ratio: list[float]
    clipped_low: list[bool]
    clipped_high: list[bool]


@dataclass
class TokenStats:
    """Per-token statistics of one response; every list has one entry per completion token [T].

    ratio is the importance ratio pi_new / pi_old actually used by the loss of the last epoch (per token,
    or the sequence-level ratio broadcast to tokens for GSPO); clipped_low / clipped_high say which side
    of the clip range the token fell on. logp_old is the trainer's log-prob before the update;
    logp_sampler the rollout engine's own (the distribution it sampled from: another dtype, top-p ...),
    so logp_old - logp_sampler is the trainer/sampler mismatch. masked: tokens the rule or a correction
    took out of the gradient besides the clip (Clip-Cov, off-policy masking, IcePop, rejection);
    penalized: KL-Cov's penalised tokens. epochs: the ratio and clip flags of each epoch before the last
    (empty with one epoch), so a view can show any epoch.
    """

    tokens: list[str]
    logp_old: list[float]
    logp_new: list[float]
    ratio: list[float]
    entropy: list[float]
    clipped_low: list[bool]
    clipped_high: list[bool]
    ref_logp: list[float] | None = None
    advantage: list[float] | None = None
    logp_sampler: list[float] | None = None
    masked: list[bool] | None = None
    penalized: list[bool] | None = None
    epochs: list[EpochTokens] | None = None

    def __post_init__(self) -> None:
        # epochs read back from JSON (an exported registry) arrive as dicts
        if self.epochs is not None:
            self.epochs = [epoch if isinstance(epoch, EpochTokens) else EpochTokens(**epoch) for epoch in self.epochs]

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def num_epochs(self) -> int:
        """How many epochs' ratios are kept: the earlier ones plus the last."""
        return 1 + len(self.epochs or ())

    def at_epoch(self, epoch: int) -> TokenStats:
        """The same response with the ratio and clip flags of `epoch` (0-based; num_epochs - 1 is the last,
        these stats themselves). The other fields are the step's (masks and log-probs of the last epoch)."""
        if not 0 <= epoch < self.num_epochs:
            raise IndexError(f"epoch {epoch} of {self.num_epochs}")
        if epoch == self.num_epochs - 1:
            return self
        earlier = self.epochs[epoch]
        return replace(self, ratio=earlier.ratio, clipped_low=earlier.clipped_low, clipped_high=earlier.clipped_high)


@dataclass
class ResponseRecord:
    """One of the G responses to a prompt: its text, reward (total and per component) and fate."""

    text: str
    reward: float
    reward_components: dict[str, float]
    advantage: float
    length: int
    truncated: bool
    dropped_by: str | None = None
    tokens: TokenStats | None = None


@dataclass
class GroupRecord:
    """A prompt with all its G responses, as sampled at one step."""

    index: int
    prompt: str
    responses: list[ResponseRecord]
    answer: str | None = None
    kind: str = "train"
    rendered_prompt: str | None = None   # the text the model saw (after the chat template), when known

    @property
    def zero_variance(self) -> bool:
        """All G rewards are equal, so every group-relative advantage is zero (DAPO drops these)."""
        rewards = [response.reward for response in self.responses]
        return bool(rewards) and max(rewards) == min(rewards)


@dataclass(frozen=True)
class EventRecord:
    """Something a user should know about a run: launched, resumed, stopped, a warning, an error."""

    id: int
    run_id: str
    ts: float
    step: int | None
    kind: str
    level: str
    message: str


@dataclass(frozen=True)
class RunInfo:
    """One run as stored, plus values derived on read (last step, last reward, queue position).

    Times are UNIX seconds.
    """

    id: str
    name: str
    variant: str
    recipe: dict[str, Any]
    host: str
    status: str
    pid: int | None
    heartbeat: float | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    git_rev: str | None
    seed: int | None
    error: str | None
    tags: list[str] = field(default_factory=list)
    parent_id: str | None = None
    total_steps: int | None = None
    #: when the process `pid` started (workbench.system.process_start): together they name one process
    pid_start: str | None = None
    last_step: int | None = None
    last_reward: float | None = None
    queue_position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
