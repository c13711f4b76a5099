"""Calibrate the run-health checks on a corpus of healthy and deliberately broken runs.

    python benchmarks/health_calibration.py [--reuse] [--only NAME,...] [--registry PATH]
    python benchmarks/health_calibration.py --from-fixture     # re-evaluate the committed series only

Trains every run of CORPUS with `workbench train RECIPE --set key=value ...`, one process at a time with
one torch thread (OMP_NUM_THREADS=1), into a scratch registry (default runs/health_calibration/registry.db);
`--reuse` keeps every run that registry already holds finished and trains only the missing ones. Then it
saves each run's series that the checks read (workbench.health.HEALTH_KEYS, plus the keys that define
where a broken run's damage shows), rounded, to tests/fixtures/health_corpus.json, judges every run with
`run_health`, prints the tables and writes them into docs/health.md between
`<!-- health-calibration:begin -->` and `<!-- health-calibration:end -->`. `--from-fixture` skips the
registry and judges the committed series (what tests/test_health.py asserts); `--no-docs` leaves
docs/health.md alone.

Also the reward functions the broken runs train on (imported by the training process as
`health_calibration:constant_reward` etc., with this folder on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
FIXTURE = ROOT / "tests" / "fixtures" / "health_corpus.json"
DOCS = ROOT / "docs" / "health.md"
BEGIN, END = "<!-- health-calibration:begin -->", "<!-- health-calibration:end -->"
DEFAULT_REGISTRY = ROOT / "runs" / "health_calibration" / "registry.db"
SIGNIFICANT, DECIMALS = 3, 4  # per value in the fixture: 3 significant digits, none below 1e-4 (the sampler /
#   trainer log-prob gap of one engine is float noise near 1e-7; every threshold is coarser than 1e-4)


# --- the broken runs' rewards (TRL signature) --------------------------------------------------------


def constant_reward(prompts, completions, **_) -> list[float]:
    """1.0 for every completion: every group's rewards are equal, so every advantage is 0."""
    return [1.0] * len(completions)


def length_reward(prompts, completions, completion_ids, max_completion_length, **_) -> list[float]:
    """Completion tokens / max_completion_length: longer is better, up to the limit (a reward that runs away)."""
    return [len(ids) / max_completion_length[0] for ids in completion_ids]


# --- the corpus ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """Where a broken run's damage shows: the first step at which the mean over the last `window` logged
    steps of `key` is below (`below`) or above `level`; with `behind`, of how far this run's `key` trails
    that corpus run's (the same recipe, unbroken) at the same steps."""

    key: str
    level: float
    below: bool = False
    behind: str | None = None
    window: int = 5
    text: str = ""

    def step(self, series: tuple[list[int], list[float]], twin: tuple[list[int], list[float]] | None = None) -> int | None:
        steps, values = series
        if self.behind is not None:
            assert twin is not None
            theirs = dict(zip(*twin, strict=True))
            steps, values = zip(*[(s, theirs[s] - v) for s, v in zip(steps, values, strict=True) if s in theirs],
                                strict=True)
        for end in range(self.window, len(values) + 1):
            mean = sum(values[end - self.window:end]) / self.window
            if (mean < self.level) if self.below else (mean > self.level):
                return steps[end - 1]
        return None


@dataclass(frozen=True)
class CorpusRun:
    name: str
    recipe: str
    overrides: tuple[str, ...] = ()
    broken: bool = False
    expect: tuple[str, ...] = ()  # broken: the warn findings that must fire (any one of them)
    damage: Damage | None = None  # broken: where the damage shows
    target: float | None = None  # healthy: the task's reward level it should reach (10-step mean)
    note: str = ""


SHORT = ("run.max_steps=50", "run.save_steps=0")
PRESETS = sorted(path.stem for path in (ROOT / "recipes").glob("*.toml")
                 if path.stem != "quickstart" and not path.stem.startswith("smollm2-"))
#: SmolLM2 shortened to a few minutes each on one busy core: 20 steps of 2 prompts x 4 completions, an eval
#: of 8 held-out prompts every 10 steps. At 16 tokens every response is cut before its answer (a broken run).
SMOLLM2_SHORT = ("run.max_steps=20", "run.save_steps=0", "rollout.prompts_per_step=2", "rollout.num_generations=4",
                 "task.eval_size=8", "run.eval_steps=10")
BROKEN_STEPS = ("run.max_steps=150", "run.save_steps=0")
BEHIND = Damage("reward", 0.1, behind="quickstart",
                text="reward (5-step mean) 0.1 below the quick start's at the same step")

CORPUS: tuple[CorpusRun, ...] = (
    *(CorpusRun(f"{preset}-50", preset, SHORT, note="preset recipe, 50 steps") for preset in PRESETS),
    *(CorpusRun(preset, preset, ("run.save_steps=0",), target=0.8, note="preset recipe, full length (200 steps)")
      for preset in PRESETS),
    CorpusRun("quickstart", "quickstart", ("run.save_steps=0",), target=0.9, note="the quick start, 400 steps"),
    *(CorpusRun(f"quickstart-seed{seed}", "quickstart", ("run.save_steps=0", f"run.seed={seed}"), target=0.9,
                note=f"the quick start, seed {seed}") for seed in (1, 2)),
    *(CorpusRun(f"quickstart-{preset}", "quickstart", ("run.save_steps=0", "run.max_steps=300",
                                                     f"algorithm.preset={preset}"), target=0.9,
                note=f"the quick start's recipe under the {preset} preset, 300 steps") for preset in ("rloo", "dr_grpo")),
    CorpusRun("lr-x100", "quickstart", (*BROKEN_STEPS, "optim.learning_rate=0.1"), broken=True,
              expect=("entropy_collapse", "zero_variance", "kl_blowup"), damage=BEHIND,
              note="quick start, learning rate 1e-3 x 100"),
    CorpusRun("temperature-0.1", "quickstart", (*BROKEN_STEPS, "rollout.temperature=0.1"), broken=True,
              expect=("zero_variance",), damage=BEHIND, note="quick start, sampling temperature 0.1"),
    CorpusRun("beta0-drift", "quickstart", (*BROKEN_STEPS, "algorithm.beta=0.0", "optim.learning_rate=1e-2",
                                             "optim.num_iterations=4"), broken=True,
              expect=("entropy_collapse", "zero_variance", "clip_spike"), damage=BEHIND,
              note="quick start, beta 0 (no KL term), learning rate x 10, 4 epochs per rollout"),
    CorpusRun("smollm2-16-tokens", "smollm2-grpo", (*SMOLLM2_SHORT, "rollout.max_completion_length=16"), broken=True,
              expect=("zero_variance", "entropy_collapse"),
              damage=Damage("completions/clipped_ratio", 0.99, text="every response truncated (5-step mean above 0.99)"),
              note="SmolLM2-135M shortened, completions cut at 16 tokens"),
    CorpusRun("constant-reward", "quickstart", (*BROKEN_STEPS, 'task.reward_funcs=["health_calibration:constant_reward"]'),
              broken=True, expect=("zero_variance",),
              damage=Damage("frac_reward_zero_std", 0.99, text="every group's rewards equal (5-step mean above 0.99)"),
              note="quick start, reward 1.0 for every completion"),
    CorpusRun("length-runaway", "quickstart", ("run.max_steps=100", "run.save_steps=0",
                                               'task.reward_funcs=["health_calibration:length_reward"]',
                                               "rollout.max_completion_length=64"), broken=True,
              expect=("length_runaway",),
              damage=Damage("completions/mean_length", 32.0, text="mean length above 32 of 64 tokens"),
              note="quick start, reward = length / 64 tokens (at 64 tokens few random-init responses hit the limit)"),
    CorpusRun("smollm2-grpo-20", "smollm2-grpo", SMOLLM2_SHORT, note="SmolLM2-135M, shortened (20 steps)"),
    CorpusRun("smollm2-dapo-20", "smollm2-dapo", SMOLLM2_SHORT, note="SmolLM2-135M, shortened (20 steps)"),
)


# --- training ----------------------------------------------------------------------------------------


def train(run: CorpusRun, registry: Path) -> float:
    """`workbench train` for one corpus run in its own process (one torch thread); returns its wall seconds."""
    command = [sys.executable, "-c", "import sys; from workbench.cli import main; sys.argv[0] = 'workbench'; main()",
               "train", run.recipe, "--registry", str(registry), "--name", run.name]
    for override in run.overrides:
        command += ["--set", override]
    path = os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "100", "PYTHONPATH": path}
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{run.name}: workbench train exited with {done.returncode}: {done.stderr[-2000:]}")
    return time.monotonic() - started


def rounded(value: float) -> float | None:
    if not math.isfinite(value):
        return None
    return round(float(f"{value:.{SIGNIFICANT}g}"), DECIMALS) + 0.0  # (+ 0.0: no -0.0)


def read_series(registry: Path, names: Sequence[str]) -> tuple[dict[str, dict], list[float]]:
    """Each finished run's series of the keys the checks and its damage rule read, compactly:
    {"steps": [first, last] (every step between logged), "series": {key: values on those steps ([v]: v at
    every step), or [steps, values] when its steps differ}}; and when the runs started and ended (Unix s)."""
    from workbench.health import HEALTH_KEYS
    from workbench.registry import Registry

    saved, times = {}, []
    with Registry.open(registry) as handle:
        finished = {run.name: run for run in handle.list_runs() if run.status == "finished"}  # (name= matches parts)
        for name in names:
            run = finished[name]
            times += [t for t in (run.started_at, run.ended_at) if t is not None]
            steps, _ = handle.series(run.id, "reward")
            if list(steps) != list(range(steps[0], steps[-1] + 1)):
                raise SystemExit(f"{name}: reward not logged at every step; the fixture assumes it is")
            damage = next((r.damage for r in CORPUS if r.name == name and r.damage), None)
            series: dict[str, list] = {}
            for key in (*HEALTH_KEYS, *([damage.key] if damage and damage.key not in HEALTH_KEYS else [])):
                key_steps, values = handle.series(run.id, key)
                if not key_steps:
                    continue
                values = [rounded(value) for value in values]
                if list(key_steps) != list(steps):
                    series[key] = [list(key_steps), values]
                else:
                    series[key] = values[:1] if len(set(values)) == 1 else values  # one value: the same at every step
            saved[name] = {"steps": [steps[0], steps[-1]], "series": series}
    for name, entry in saved.items():  # a run that is the start of a longer one (same recipe and seed): a reference
        for other, longer in saved.items():
            if other == name or "series" not in longer or longer["steps"][1] <= entry["steps"][1]:
                continue
            reference = {"prefix_of": other, "steps": entry["steps"]}
            if as_metrics(reference, saved) == as_metrics(entry):
                saved[name] = reference
                break
    return saved, times


def finished_names(registry: Path) -> set[str]:
    if not registry.exists():
        return set()
    from workbench.registry import Registry

    with Registry.open(registry) as handle:
        return {run.name for run in handle.list_runs() if run.status == "finished"}


# --- evaluation -------------------------------------------------------------------------------------

TOLERANCE = 20  # logged steps: a broken run's finding must fire within this many steps of its damage step


def as_metrics(entry: Mapping, runs: Mapping | None = None) -> dict[str, tuple[list[int], list[float]]]:
    """A fixture entry back to run_health's {key: (steps, values)} (None -> NaN, which the checks skip);
    {"prefix_of": NAME, "steps": [1, last]}: run NAME's series up to step `last` (`runs`: the fixture's)."""
    first, last = entry["steps"]
    if "prefix_of" in entry:
        assert runs is not None
        whole = as_metrics(runs[entry["prefix_of"]])
        return {key: tuple(map(list, zip(*[(s, v) for s, v in zip(*series, strict=True) if s <= last], strict=True)))
                for key, series in whole.items() if any(s <= last for s in series[0])}
    metrics = {}
    for key, stored in entry["series"].items():
        steps, values = ((stored[0], stored[1]) if stored and isinstance(stored[0], list)
                         else (list(range(first, last + 1)), stored))
        values = values * len(steps) if len(values) == 1 else values
        metrics[key] = (list(steps), [math.nan if value is None else value for value in values])
    return metrics


def describe(runs: Mapping[str, Mapping]) -> dict[str, dict]:
    """The fixture's "corpus" block: each run's recipe, overrides and role, and for a broken run the
    findings expected, where its damage shows (rule and step) and the tolerance."""
    described = {}
    for run in CORPUS:
        if run.name not in runs:
            continue
        entry = {"recipe": run.recipe, "overrides": list(run.overrides), "broken": run.broken, "note": run.note,
                 "target": run.target}
        if run.broken and run.damage is not None:
            metrics = as_metrics(runs[run.name], runs)
            twin = as_metrics(runs[run.damage.behind], runs)[run.damage.key] if run.damage.behind else None
            entry |= {"expect": list(run.expect), "damage": run.damage.text,
                      "damage_step": run.damage.step(metrics[run.damage.key], twin), "tolerance": TOLERANCE}
        described[run.name] = entry
    return described


@dataclass
class Verdict:
    """One corpus run judged by run_health at its last step."""

    name: str
    broken: bool
    reached: bool  # healthy: its reward's last 10-step mean reached its target
    final_reward: float
    warn: list  # the faults (Finding)
    info: list  # the notes (Finding)
    live: int = 0  # steps at which the run, judged on its series up to that step (as a live run is), had a fault
    damage_step: int | None = None
    fired_step: int | None = None  # broken: the earliest expected fault's step
    ok: bool = True


def judge(name: str, described: Mapping, entry: Mapping, runs: Mapping, thresholds=None) -> Verdict:
    from workbench.health import run_health

    metrics = as_metrics(entry, runs)
    health = run_health(metrics, thresholds)
    reward = [value for value in metrics["reward"][1] if math.isfinite(value)]
    final = sum(reward[-10:]) / len(reward[-10:])
    target = described.get("target")
    verdict = Verdict(name, described["broken"], target is not None and final >= target, final,
                      health.findings, health.notes)
    verdict.live = sum(bool(run_health(upto(metrics, step), thresholds).findings) for step in metrics["reward"][0])
    if not verdict.broken:
        verdict.ok = not verdict.warn
        return verdict
    verdict.damage_step = described["damage_step"]
    fired = [finding.step for finding in health.findings if finding.check in described["expect"]]
    verdict.fired_step = min(fired) if fired else None
    verdict.ok = (verdict.fired_step is not None and verdict.damage_step is not None
                  and abs(verdict.fired_step - verdict.damage_step) <= described["tolerance"])
    return verdict


def upto(metrics: Mapping[str, tuple[list[int], list[float]]], last: int) -> dict[str, tuple[list[int], list[float]]]:
    """The series as they stood when step `last` was logged."""
    cut = {key: [(s, v) for s, v in zip(*series, strict=True) if s <= last] for key, series in metrics.items()}
    return {key: ([s for s, _ in pairs], [v for _, v in pairs]) for key, pairs in cut.items()}


def fraction(count: int, total: int) -> str:
    return f"{count}/{total}"


def tables(verdicts: Sequence[Verdict], described: Mapping) -> str:
    """The markdown between the docs markers: per finding, per broken run, per run."""
    from workbench.health import CHECKS

    reached = [v for v in verdicts if not v.broken and v.reached]
    other = [v for v in verdicts if not v.broken and not v.reached]
    broken = [v for v in verdicts if v.broken]

    def count(group: Sequence[Verdict], check: str, attribute: str) -> int:
        return sum(any(f.check == check for f in getattr(v, attribute)) for v in group)

    lines = [f"| finding | healthy, reward reached ({len(reached)}): warn (note) | healthy recipe, reward not reached "
             f"({len(other)}): warn (note) | broken ({len(broken)}): warn |",
             "|---|---|---|---|"]
    for check in CHECKS:
        lines.append(f"| `{check}` | {fraction(count(reached, check, 'warn'), len(reached))} "
                     f"({count(reached, check, 'info')}) | {fraction(count(other, check, 'warn'), len(other))} "
                     f"({count(other, check, 'info')}) | {fraction(count(broken, check, 'warn'), len(broken))} |")
    lines += ["", "| broken run | what is broken | expected | damage shows when | damage step | fired (warn) | "
              f"fired - damage | within {TOLERANCE} steps |", "|---|---|---|---|---|---|---|---|"]
    for v in broken:
        about = described[v.name]
        fired = ", ".join(f"`{f.check}` @ {f.step}" for f in v.warn) or "nothing"
        gap = "-" if v.fired_step is None or v.damage_step is None else f"{v.fired_step - v.damage_step:+d}"
        expected = " or ".join(f"`{check}`" for check in about["expect"])
        lines.append(f"| {v.name} | {about['note']} | {expected} | {about['damage']} | {v.damage_step} | {fired} | {gap} | "
                     f"{'yes' if v.ok else 'NO'} |")
    lines += ["", "| run | role | steps | final reward | warn | notes | steps with a fault, judged live |",
              "|---|---|---|---|---|---|---|"]
    for v in verdicts:
        about = described[v.name]
        role = "broken" if v.broken else ("healthy, reached" if v.reached else "healthy, not reached")
        warn = ", ".join(f"{f.label} @ {f.step}" for f in v.warn) or "-"
        info = ", ".join(f"{f.label} @ {f.step}" for f in v.info) or "-"
        steps = about.get("steps", "")
        lines.append(f"| {v.name} | {role} | {steps} | {v.final_reward:.3f} | {warn} | {info} | {v.live} |")
    return "\n".join(lines)


def write_docs(block: str) -> None:
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOCS}: no {BEGIN} ... {END} block to rewrite")
    head, rest = text.split(BEGIN, 1)
    DOCS.write_text(head + BEGIN + "\n" + block + "\n" + END + rest.split(END, 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    parser.add_argument("--reuse", action="store_true", help="train only the runs the registry lacks")
    parser.add_argument("--only", default="", help="comma-separated corpus run names to train (default: all)")
    parser.add_argument("--from-fixture", action="store_true", help="judge the committed fixture; train nothing")
    parser.add_argument("--no-docs", action="store_true", help=f"print the tables; leave {DOCS.name} alone")
    args = parser.parse_args()
    sys.path[:0] = [str(HERE), str(ROOT)]
    from machine import stamp  # (benchmarks/machine.py, beside this script)

    started = stamp("start")
    print(started, flush=True)
    fixture = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else {"runs": {}}
    if not args.from_fixture:
        if args.registry.exists() and not args.reuse:
            raise SystemExit(f"{args.registry} exists: pass --reuse to keep its runs, or remove it")
        args.registry.parent.mkdir(parents=True, exist_ok=True)
        done = finished_names(args.registry)
        todo = [run for run in CORPUS if run.name not in done and (not args.only or run.name in args.only.split(","))]
        for run in todo:
            print(f"trained {run.name} in {train(run, args.registry):.0f} s", flush=True)
        names = [run.name for run in CORPUS if run.name in finished_names(args.registry)]
        fixture["runs"] = {name: entry for name, entry in fixture["runs"].items() if name in {r.name for r in CORPUS}}
        series, times = read_series(args.registry, names)
        fixture["runs"].update(series)
        fixture["corpus"] = describe(fixture["runs"])
        for name, entry in fixture["corpus"].items():
            first, last = fixture["runs"][name]["steps"]
            entry["steps"] = last - first + 1
        when = [datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") for t in (min(times), max(times))]
        fixture["trained"] = f"{when[0]} to {when[1]} UTC, {platform.machine()} {os.cpu_count()} cores"
        FIXTURE.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    verdicts = [judge(name, about, fixture["runs"][name], fixture["runs"]) for name, about in fixture["corpus"].items()]
    block = tables(verdicts, fixture["corpus"])
    print(block)
    print(stamp("end"))
    if not args.no_docs:
        write_docs(f"Runs trained {fixture['trained']} (shared with other work: load average 6 to 10), one torch "
                   f"thread each; judged by this checkout's defaults.\n\n{block}")


if __name__ == "__main__":
    main()
