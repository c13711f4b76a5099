"""Write docs/reliability.md: every bad input below, given to the real `workbench` CLI in a scratch
directory, with the exit code and exactly what the user sees on stderr (first lines).

    python docs/make_reliability_table.py            # rewrites docs/reliability.md (about 2 minutes)
    python docs/make_reliability_table.py --check    # exit 1 if a case no longer exits 2 with one line

Nothing here is typed by hand: change a message in the code, rerun, and the page follows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reliability.md"
CLI = [sys.executable, "-c", "import sys; sys.argv[0] = 'workbench'; from workbench.cli import main; main()"]
sys.path.insert(0, str(ROOT))

from tests.fixtures.recipes import TINY  # noqa: E402


@dataclass(frozen=True)
class Case:
    area: str
    what: str
    args: tuple[str, ...]
    expect: int = 2  # the exit code a correct CLI gives
    read_only: bool = False  # run without the power to ignore file permissions


def recipe(name: str, text: str) -> str:
    """Write a recipe file into the scratch directory (at build time) and return its name."""
    RECIPES[name] = text
    return name


RECIPES: dict[str, str] = {}


def s(*overrides: str) -> tuple[str, ...]:
    return tuple(part for item in overrides for part in ("--set", item))


def launch(*args: str) -> tuple[str, ...]:
    return ("launch", "tiny.toml", *args, "-r", "runs/registry.db")


CASES = [
    # -------------------------------------------------------------------- recipe files
    Case("recipe", "recipe file that does not exist", ("launch", "no-such.toml", "-r", "runs/registry.db")),
    Case("recipe", "recipe path is a directory", ("launch", "data_dir", "-r", "runs/registry.db")),
    Case("recipe", "recipe that is not UTF-8 (Latin-1 é)", ("launch", "latin1.toml", "-r", "runs/registry.db")),
    Case("recipe", "recipe that is not TOML", ("launch", recipe("broken.toml", "[run\nmax_steps = 3\n"), "-r", "r.db")),
    Case("recipe", "misspelt section [modle]", ("launch", recipe("typo.toml", "[modle]\nname_or_path = 'tiny'\n"), "-r", "r.db")),
    Case("recipe", "section that is not a table", ("launch", recipe("flat.toml", "run = 3\n"), "-r", "r.db")),
    Case("recipe", "unknown key in [run]", launch(*s("run.no_such_key=1"))),
    Case("recipe", "key in the wrong section", launch(*s("run.learning_rate=0.1"))),
    Case("recipe", "string where an int belongs", launch(*s("run.max_steps=ten"))),
    Case("recipe", "bool where an int belongs", launch(*s("run.max_steps=true"))),
    Case("recipe", "list item of the wrong type", launch(*s("task.operations=[1]"))),
    Case("recipe", "list item not allowed", launch(*s('task.operations=["/"]'))),
    Case("recipe", "choice not allowed", launch(*s("model.dtype=float8"))),
    Case("recipe", "unknown preset", launch(*s("algorithm.preset=grop"))),
    Case("recipe", "unknown algorithm key", launch(*s("algorithm.clip=0.2"))),
    Case("recipe", "learning rate NaN in the file",
         ("launch", recipe("nan.toml", TINY + "\n[optim]\nlearning_rate = nan\n"), "-r", "r.db")),
    Case("recipe", "learning rate inf", launch(*s("optim.learning_rate=inf"))),
    Case("recipe", "learning rate 0", launch(*s("optim.learning_rate=0"))),
    Case("recipe", "negative warmup", launch(*s("optim.warmup_steps=-1"))),
    Case("recipe", "top_p above 1", launch(*s("rollout.top_p=1.5"))),
    Case("recipe", "integer too large for any counter", launch(*s("run.max_steps=99999999999999999999999"))),
    Case("recipe", "seed below the integer range", launch(*s("run.seed=-99999999999999"))),
    Case("recipe", "heads that do not divide hidden size", launch(*s("model.num_attention_heads=3"))),
    Case("recipe", "group of one for a group estimator", launch(*s("rollout.num_generations=1"))),
    Case("recipe", "GFPO keeping as many as it samples", launch(*s("algorithm.preset=gfpo", "algorithm.gfpo_k=4"))),
    Case("recipe", "overlong buffer longer than the completion",
         launch(*s("algorithm.preset=dapo", "algorithm.overlong_buffer_len=3"))),
    Case("recipe", "minibatch that does not divide the batch", launch(*s("optim.minibatch_size=3"))),
    Case("recipe", "accumulation that does not divide the minibatch", launch(*s("optim.gradient_accumulation_steps=3"))),
    Case("recipe", "dataset task without a path", launch(*s("task.name=dataset"))),
    Case("recipe", "min_operand above max_operand", launch(*s("task.min_operand=9"))),
    Case("recipe", "reverse task with 0 digits", launch(*s("task.name=reverse", "task.min_digits=0"))),
    Case("recipe", "no reward function", launch(*s("task.reward_funcs=[]"))),
    Case("recipe", "unknown built-in reward", launch(*s('task.reward_funcs=["exact"]'))),
    Case("recipe", "one weight for two rewards", launch(*s('task.reward_funcs=["exact_match","format"]', "task.reward_weights=[1.0]"))),
    Case("recipe", "reward weight NaN", launch(*s("task.reward_weights=[nan]"))),
    Case("recipe", "format regex that does not compile", launch(*s('task.format_pattern="("'))),
    Case("recipe", "evaluation without held-out prompts", launch(*s("run.eval_steps=5"))),
    Case("recipe", "negative clip epsilon", launch(*s("algorithm.epsilon=-1"))),
    Case("recipe", "clip epsilon NaN", launch(*s("algorithm.epsilon=nan"))),
    # -------------------------------------------------------------------- --set
    Case("--set", "no '='", launch("--set", "run.max_steps")),
    Case("--set", "no section", launch("--set", "max_steps=3")),
    Case("--set", "unknown section", launch("--set", "trainer.max_steps=3")),
    Case("--set", "a newline and a second table in the value",
         launch("--set", 'run.max_steps=3\n[model]\nname_or_path = "elsewhere"')),
    Case("--set", "a newline in a bare word", launch("--set", "run.mixed_precision=no\nbf16")),
    # -------------------------------------------------------------------- what the recipe points at
    Case("inputs", "reward module that does not exist", launch(*s('task.reward_funcs=["no_such_module:score"]'))),
    Case("inputs", "reward function missing from its module", launch(*s('task.reward_funcs=["rewards_ok:missing"]'))),
    Case("inputs", "reward name bound to a number", launch(*s('task.reward_funcs=["rewards_const:SCORE"]'))),
    Case("inputs", "reward module whose import fails", launch(*s('task.reward_funcs=["rewards_broken:score"]'))),
    Case("inputs", "reward module with a syntax error", launch(*s('task.reward_funcs=["rewards_syntax:score"]'))),
    Case("inputs", "dataset file that does not exist", launch(*s("task.name=dataset", "task.path=missing.jsonl"))),
    Case("inputs", "dataset of an unknown type", launch(*s("task.name=dataset", "task.path=notes.txt"))),
    Case("inputs", "dataset directory not written by save_to_disk", launch(*s("task.name=dataset", "task.path=data_dir"))),
    Case("inputs", "JSONL without the prompt column", launch(*s("task.name=dataset", "task.path=rows.jsonl"))),
    Case("inputs", "JSONL whose first line is not JSON", launch(*s("task.name=dataset", "task.path=garbled.jsonl"))),
    Case("inputs", "empty JSONL", launch(*s("task.name=dataset", "task.path=empty.jsonl"))),
    Case("inputs", "CSV without the prompt column", launch(*s("task.name=dataset", "task.path=rows.csv"))),
    Case("inputs", "eval_path that does not exist",
         launch(*s("task.name=dataset", "task.path=good.jsonl", "task.eval_path=missing_eval.jsonl"))),
    Case("inputs", "split missing from a saved DatasetDict",
         launch(*s("task.name=dataset", "task.path=saved_dict", "task.split=test"))),
    Case("inputs", "model directory that does not exist", launch(*s("model.name_or_path=./models/nope"))),
    Case("inputs", "model directory that is empty", launch(*s("model.name_or_path=data_dir"))),
    Case("inputs", "model directory with a config but no weights", launch(*s("model.name_or_path=config_no_weights"))),
    Case("inputs", "model directory without tokenizer files", launch(*s("model.name_or_path=config_only"))),
    Case("inputs", "model path that is a file", launch(*s("model.name_or_path=tiny.toml"))),
    Case("inputs", "model config.json that is not JSON", launch(*s("model.name_or_path=bad_config"))),
    Case("inputs", "hub id not cached, offline", launch(*s("model.name_or_path=Qwen/Qwen2.5-0.5B"))),
    Case("inputs", "the same bad reward through `train`",
         ("train", "tiny.toml", *s('task.reward_funcs=["no_such_module:score"]'), "-r", "runs/registry.db")),
    Case("inputs", "the same bad model through `train`",
         ("train", "tiny.toml", *s("model.name_or_path=./models/nope"), "-r", "runs/registry.db")),
    # -------------------------------------------------------------------- launching options and registries
    Case("launch", "GPU list with a non-number", launch("--gpus", "0,x")),
    Case("launch", "--max-runs 0", launch("--max-runs", "0")),
    Case("launch", "--num-processes 0 (option parser)", launch("--num-processes", "0")),
    Case("launch", "unknown option", ("runs", "--no-such-option")),
    Case("launch", "missing recipe argument", ("launch",)),
    Case("launch", "accelerate config that does not exist",
         launch("--num-processes", "2", "--accelerate-config", "missing.yaml")),
    Case("registry", "--registry under a file (launch)", ("launch", "tiny.toml", "-r", "tiny.toml/registry.db")),
    Case("registry", "--registry under a file (train)", ("train", "tiny.toml", "-r", "tiny.toml/registry.db")),
    Case("registry", "--registry that is a directory", ("runs", "-r", "data_dir")),
    Case("registry", "--registry that is not SQLite", ("runs", "-r", "notes.txt")),
    Case("registry", "--registry that is an empty file", ("runs", "-r", "empty.jsonl")),
    Case("registry", "--registry that does not exist (read command)", ("runs", "-r", "nowhere/registry.db")),
    Case("registry", "read a registry in a read-only directory (reads never write)", ("runs", "-r", "ro/registry.db"),
         expect=0, read_only=True),
    # -------------------------------------------------------------------- finding runs
    Case("runs", "run id that does not exist", ("show", "zzzzzz", "-r", "runs.db")),
    Case("runs", "id prefix shared by two runs", ("show", "abc", "-r", "runs.db")),
    Case("runs", "name shared by two runs", ("show", "twin", "-r", "runs.db")),
    Case("runs", "`show a`: the run named a, not an id starting with a", ("show", "a", "-r", "runs.db"), expect=0),
    Case("runs", "unknown status filter", ("runs", "--status", "bogus", "-r", "runs.db")),
    Case("runs", "stop a run that does not exist", ("stop", "zzzzzz", "-r", "runs.db")),
    Case("runs", "logs with no registry", ("logs", "abc", "-r", "nowhere/registry.db")),
    Case("runs", "resume a run without a checkpoint", ("resume", "crashed-run", "-r", "runs.db")),
    Case("runs", "resume a queued run", ("resume", "queued-run", "-r", "runs.db")),
    Case("runs", "rm a running run", ("rm", "running-run", "--yes", "-r", "runs.db")),
    Case("runs", "rm without --yes off a terminal", ("rm", "twin-a", "-r", "runs.db")),
    Case("runs", "metrics key that does not exist", ("metrics", "abc234", "rewrd", "-r", "runs.db")),
    Case("runs", "samples of a run without groups", ("samples", "abc234", "-r", "runs.db")),
    # -------------------------------------------------------------------- export and import
    Case("exchange", "import a file that does not exist", ("import", "missing.jsonl", "-r", "target.db")),
    Case("exchange", "import random bytes", ("import", "random.bin", "-r", "target.db")),
    Case("exchange", "import a file that is not JSON", ("import", "notes.txt", "-r", "target.db")),
    Case("exchange", "import JSON that is not an object per line", ("import", "array.jsonl", "-r", "target.db")),
    Case("exchange", "import another tool's JSONL", ("import", "rows.jsonl", "-r", "target.db")),
    Case("exchange", "import an export cut at a line boundary", ("import", "cut.jsonl", "-r", "target.db"), expect=0),
    Case("exchange", "import an old export without end record", ("import", "old.jsonl", "-r", "target2.db"), expect=0),
    Case("exchange", "import a different run under an existing id", ("import", "clash.jsonl", "-r", "runs.db")),
    Case("exchange", "import into a read-only registry file", ("import", "full.jsonl", "-r", "ro_file/registry.db"),
         read_only=True),
    Case("exchange", "import into a registry in a read-only directory",
         ("import", "full.jsonl", "-r", "ro/registry.db"), read_only=True),
    Case("exchange", "export onto a directory", ("export", "abc234", "-o", "data_dir", "-r", "runs.db")),
    Case("exchange", "export under a file", ("export", "abc234", "-o", "tiny.toml/out.jsonl", "-r", "runs.db")),
    Case("exchange", "export a run that does not exist", ("export", "zzzzzz", "-r", "runs.db")),
    # -------------------------------------------------------------------- display
    Case("display", "run name with markup, ANSI/OSC escapes and a newline", ("runs", "--name", "bold", "-r", "runs.db"),
         expect=0),
]

HOSTILE_NAME = "[bold]bold[/] \x1b[31mred\x1b]0;title\x07\nline"


def build_scratch(scratch: Path) -> None:
    """The files and registries the cases point at."""
    from workbench.registry import Registry

    (scratch / "tiny.toml").write_text(TINY)
    for name, text in RECIPES.items():
        (scratch / name).write_text(text)
    (scratch / "latin1.toml").write_bytes("[run]\n# caf\xe9\n".encode("latin-1"))
    (scratch / "rewards_ok.py").write_text("def score(prompts, completions, **kw):\n    return [0.0] * len(completions)\n")
    (scratch / "rewards_const.py").write_text("SCORE = 3\n")
    (scratch / "rewards_broken.py").write_text("import no_such_dependency\n")
    (scratch / "rewards_syntax.py").write_text("def score(:\n")
    (scratch / "notes.txt").write_text("1+1\n")
    (scratch / "rows.jsonl").write_text(json.dumps({"question": "1+1", "answer": "2"}) + "\n")
    (scratch / "good.jsonl").write_text(json.dumps({"prompt": "1+1=", "answer": "2"}) + "\n")
    (scratch / "garbled.jsonl").write_text("{prompt: 1+1}\n")
    (scratch / "empty.jsonl").write_text("")
    (scratch / "rows.csv").write_text("question,answer\n1+1,2\n")
    (scratch / "array.jsonl").write_text("[1, 2, 3]\n")
    (scratch / "random.bin").write_bytes(bytes(range(128, 256)) * 4)
    (scratch / "data_dir").mkdir()
    saved = scratch / "saved_dict"
    saved.mkdir()
    (saved / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    for name, files in {
        "config_no_weights": {"config.json": json.dumps({"model_type": "qwen2"})},
        "config_only": {"config.json": json.dumps({"model_type": "qwen2"}), "model.safetensors": ""},
        "bad_config": {"config.json": "{model_type: qwen2"},
    }.items():
        (scratch / name).mkdir()
        for file, text in files.items():
            (scratch / name / file).write_text(text)
    with Registry.open(scratch / "runs.db", create=True) as registry:
        named_a = registry.create_run(name="a", variant="grpo", status="finished", run_id="bcd234")
        registry.create_run(name="other", variant="grpo", status="finished", run_id="abc234")
        registry.create_run(name="other2", variant="grpo", status="finished", run_id="abc345")
        registry.create_run(name="twin", variant="grpo", status="finished", run_id="twin-a")
        registry.create_run(name="twin", variant="grpo", status="finished", run_id="twin-b")
        registry.create_run(name="crashed", variant="grpo", status="crashed", run_id="crashed-run")
        registry.create_run(name="queued", variant="grpo", status="queued", run_id="queued-run")
        running = registry.create_run(name="running", variant="grpo", status="running", run_id="running-run")
        registry.conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (os.getpid(), running))
        registry.create_run(name=HOSTILE_NAME, variant="grpo", status="finished", run_id="hostile",
                            tags=("[red]tag[/]",))
        for step in range(3):
            registry.record_step(named_a, step, {"reward": 0.5})
            registry.record_step("abc234", step, {"reward": 0.5})
    export = subprocess.run([*CLI, "export", "bcd234", "-r", "runs.db"], cwd=scratch, capture_output=True,
                            text=True, check=True).stdout.splitlines(keepends=True)
    (scratch / "full.jsonl").write_text("".join(export))
    (scratch / "cut.jsonl").write_text("".join(export[:2]))
    first = json.loads(export[0]) | {"version": 1}
    (scratch / "old.jsonl").write_text(json.dumps(first) + "\n" + "".join(export[1:-1]))
    clash = json.loads(export[0])
    clash["run"]["created_at"] += 1
    (scratch / "clash.jsonl").write_text(json.dumps(clash) + "\n")
    for directory in ("ro", "ro_file"):
        with Registry.open(scratch / directory / "registry.db", create=True):
            pass
        for leftover in (scratch / directory).glob("registry.db-*"):
            leftover.unlink()
        (scratch / directory / "registry.db").chmod(0o444)
    (scratch / "ro").chmod(0o555)


def run_case(case: Case, scratch: Path, env: dict[str, str]) -> tuple[int, str, str]:
    command = list(CLI) + list(case.args)
    if case.read_only and os.geteuid() == 0 and shutil.which("setpriv"):
        # root ignores file permissions unless it gives up that capability
        command = [shutil.which("setpriv"), "--bounding-set=-dac_override,-dac_read_search", *command]
    done = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def shown_args(args: tuple[str, ...]) -> str:
    return "workbench " + " ".join(json.dumps(arg) if (set(arg) & set(" \n\"[]$")) or not arg else arg for arg in args)


def cell(text: str) -> str:
    """Markdown table cell holding text literally: code span, pipes escaped, control characters visible."""
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if text else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; do not rewrite the page")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="workbench-reliability-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", NO_COLOR="1", COLUMNS="100",
               WORKBENCH_STALE_AFTER="inf", HF_HUB_CACHE=str(scratch / "hub-cache"))
    env.pop("WORKBENCH_REGISTRY", None)
    sys.path.insert(0, str(ROOT))
    rows, failures = [], []
    try:
        build_scratch(scratch)
        started = time.monotonic()
        for number, case in enumerate(CASES, start=1):
            code, out, err = run_case(case, scratch, env)
            seen = err.strip("\n").replace(str(scratch.resolve()), "<dir>").replace(str(scratch), "<dir>")
            if case.expect == 0:
                seen = seen or out.strip("\n").replace(str(scratch), "<dir>")
            one_line = seen.count("\n") == 0
            ok = code == case.expect and (case.expect == 0 or (one_line and seen.startswith("error: ")))
            if "Traceback" in err or not ok:
                failures.append(f"#{number} {case.what}: exit {code}, stderr {err[-300:]!r}")
            shown = seen.splitlines()[:4] if case.expect == 0 else seen.splitlines()
            rows.append((number, case, code, "\n".join(shown), ok))
            print(f"{number:3d} exit {code} {'ok ' if ok else 'BAD'} {case.what}", file=sys.stderr)
        elapsed = time.monotonic() - started
    finally:
        (scratch / "ro").chmod(0o755) if (scratch / "ro").exists() else None
        shutil.rmtree(scratch, ignore_errors=True)
    if not options.check:
        PAGE.write_text(render(rows, elapsed))
        print(f"wrote {PAGE} ({len(rows)} cases)", file=sys.stderr)
    for failure in failures:
        print(f"not one clean line: {failure}", file=sys.stderr)
    return 1 if failures else 0


def render(rows: list, elapsed: float) -> str:
    clean = sum(1 for *_, ok in rows if ok)
    lines = [
        "# Reliability: what each bad input prints",
        "",
        "Every bad input below was given to the real `workbench` command in a scratch directory by",
        "`docs/make_reliability_table.py`, which wrote this page; the last column is exactly what the",
        "command printed on stderr (the scratch directory shown as `<dir>`). Bad input exits with",
        "code 2 and one line naming the cause: the file, the key, the value and what is allowed. Nothing",
        "is registered when a launch is refused, and the recipe's model, dataset files and reward",
        "functions are checked before a run exists. The few rows with exit 0 are inputs that are",
        "accepted on purpose, shown for what the user sees.",
        "",
        f"{clean} of {len(rows)} cases behave as intended (generated {time.strftime('%Y-%m-%d')}, "
        f"{elapsed:.0f} s).",
        "",
        "Rules the table shows:",
        "",
        "- Messages are printed literally and on one line however long: `[model]` stays `[model]`, and",
        "  newlines or terminal escape sequences in user text appear as `\\n`, `\\x1b`.",
        "- A run is found by exact id, then exact name, then unique id prefix; two runs matching is an",
        "  error that lists them.",
        "- Numbers in a recipe are finite, and integers lie within -2147483648 to 2147483647.",
        "- A JSONL export ends with an end record counting its records; an import that lacks it says",
        "  `truncated export` on stderr and as a warning event on the run (exports from before the end",
        "  record import with the note `no end record`).",
        "- Option-parser errors (a missing argument, an unknown option, a value the option's type",
        "  refuses) are one line too, with a pointer to the command's `--help`.",
        "",
        "| # | area | bad input | command | exit | what the user sees |",
        "|---|---|---|---|---|---|",
    ]
    for number, case, code, seen, ok in rows:
        flag = "" if ok else " (**not yet one line**)"
        lines.append(f"| {number} | {case.area} | {case.what}{flag} | {cell(shown_args(case.args))} | {code} | "
                     + "<br>".join(cell(line) for line in seen.splitlines()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
