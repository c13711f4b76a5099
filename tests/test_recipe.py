"""Recipes: loading, --set overrides, validation messages (file, key, value, allowed), schema."""

from __future__ import annotations

import json

import pytest

from workbench.algorithms.variants import VARIANTS
from workbench.errors import UserError
from workbench.recipe import (
    RECIPES_DIR,
    SCHEMA,
    SECTIONS,
    RecipeError,
    find_recipe,
    load_recipe,
    parse_override,
    recipe_from_dict,
)

PRESET_RECIPES = sorted(VARIANTS)


def write(tmp_path, text: str):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", [*PRESET_RECIPES, "quickstart"])
def test_every_shipped_recipe_loads_and_round_trips(name):
    path = find_recipe(name)
    assert path == RECIPES_DIR / f"{name}.toml"
    recipe = load_recipe(path)
    assert recipe.preset == ("grpo" if name == "quickstart" else name)
    stored = json.loads(json.dumps(recipe.to_dict()))
    assert recipe_from_dict(stored, source=str(path)) == recipe
    assert set(stored) == set(SECTIONS)
    if name != "quickstart":
        assert recipe.updates_per_step > 1


def test_set_overrides_parse_toml_scalars_and_win_over_the_file():
    recipe = load_recipe(find_recipe("dapo"), ["algorithm.epsilon_high=0.3", "run.max_steps=7",
                                                "task.reward_funcs=['exact_match']", "task.reward_weights=[]",
                                                "model.name_or_path=/some/dir"])
    assert recipe.algorithm.epsilon_high == 0.3
    assert recipe.algorithm.epsilon == 0.2                  # the preset's value stays
    assert recipe.run.max_steps == 7
    assert recipe.task.reward_funcs == ("exact_match",)
    assert recipe.model.name_or_path == "/some/dir"          # a bare word is a string
    assert recipe.to_dict()["algorithm"]["epsilon_high"] == 0.3
    assert parse_override("algorithm.epsilon_high=off") == ("algorithm", "epsilon_high", "off")
    assert load_recipe(find_recipe("dapo"), ["algorithm.epsilon_high=off"]).algorithm.epsilon_high is None


@pytest.mark.parametrize("override, expected", [
    ("epsilon_high", "expected section.key=value"),
    ("rollout.num_generation=4", "unknown key rollout.num_generation (did you mean 'num_generations'?)"),
    ("run.num_generations=4", "unknown key run.num_generations (it belongs in [rollout])"),
    ("rollout.num_generations=1", "rollout.num_generations = 1: advantage_estimator 'group' compares responses "
                                  "within a group; allowed: num_generations >= 2"),
    ("optim.learning_rate='fast'", "optim.learning_rate = 'fast': must be a float"),
    ("optim.lr_scheduler_type='step'", "optim.lr_scheduler_type = 'step': not allowed; allowed values: "
                                       "'constant', 'linear', 'cosine'"),
    ("algorithm.preset='grpoo'", "algorithm.preset = 'grpoo': unknown preset (did you mean 'grpo'?); allowed values:"),
    ("algorithm.kl_estimator='k4'", "algorithm.kl_estimator = 'k4' (preset 'grpo'): kl_estimator='k4' is not "
                                    "allowed; allowed values: 'k1', 'k2', 'k3'"),
    ("optim.minibatch_size=48", "optim.minibatch_size = 48: must divide prompts_per_step * num_generations = 64"),
])
def test_bad_overrides_name_file_key_value_and_allowed(override, expected):
    with pytest.raises(RecipeError) as caught:
        load_recipe(find_recipe("grpo"), [override])
    message = str(caught.value)
    assert expected in message
    assert isinstance(caught.value, UserError)
    if "=" in override:
        assert message.startswith(str(RECIPES_DIR / "grpo.toml"))


def test_impossible_combinations_are_refused(tmp_path):
    cases = {
        "[algorithm]\npreset = 'dapo'\nepsilon_high = -0.1\noverlong_buffer_len = 2\n":
            "algorithm.epsilon_high = -0.1 (preset 'dapo'): epsilon_high=-0.1 is out of range; allowed values: "
            "0.0 <= epsilon_high",
        "[algorithm]\npreset = 'ppo'\ncritic = false\n": "algorithm.critic = False (preset 'ppo'): critic=False "
                                                        "with advantage_estimator='gae'",
        "[algorithm]\npreset = 'gfpo'\ngfpo_k = 8\n[rollout]\nnum_generations = 8\n":
            "algorithm.gfpo_k = 8: GFPO samples more than it keeps; allowed: gfpo_k < rollout.num_generations = 8",
        "[algorithm]\npreset = 'dapo'\n[rollout]\nmax_completion_length = 8\n":
            "algorithm.overlong_buffer_len = 4096: the buffer lies inside the completion; allowed: "
            "overlong_buffer_len < rollout.max_completion_length = 8",
        "[task]\nname = 'dataset'\n": "task.path = '': task.name = 'dataset' needs a path",
        "[task]\nreward_funcs = ['exact', 'format']\n": "task.reward_funcs = 'exact': allowed: exact_match, numeric, "
                                                         "format, math_verify, length_penalty, answer_format, answer_match, countdown "
                                                         "or 'module:function' "
                                                         "(did you mean 'exact_match'?)",
        "[task]\nreward_funcs = ['exact_match', 'format']\nreward_weights = [1.0]\n":
            "task.reward_weights = [1.0]: needs one weight per reward function (2), or none",
        "[modle]\nname_or_path = 'tiny'\n": "unknown section [modle] (did you mean 'model'?)",
        "[rollout]\ntop_p = 1.5\n": "rollout.top_p = 1.5: allowed: 0 < top_p <= 1",
        "[model]\nhidden_size = 60\nnum_attention_heads = 8\n": "model.num_attention_heads = 8: must divide "
                                                               "model.hidden_size = 60",
        "[run]\nmax_steps = 0\n": "run.max_steps = 0: must be > 0",
        "[run]\nseed = 1.5\n": "run.seed = 1.5: must be an int",
        "[model]\nuse_peft = 'yes'\n": "model.use_peft = 'yes': must be a bool",
        "[task]\noperations = ['+', '/']\n": "task.operations = ['+', '/']: '/' is not allowed; allowed values: "
                                             "'+', '-', '*'",
        "[rollout\n": "not valid TOML",
    }
    for text, expected in cases.items():
        path = write(tmp_path, text)
        with pytest.raises(RecipeError) as caught:
            load_recipe(path)
        assert str(path) in str(caught.value)
        assert expected in str(caught.value), (text, str(caught.value))


def test_defaults_fill_every_section_and_preset_values_apply():
    recipe = recipe_from_dict({"algorithm": {"preset": "gspo"}})
    assert recipe.algorithm.importance_sampling_level == "sequence"
    assert recipe.algorithm.epsilon == 3e-4
    assert recipe.rollout.num_generations == SCHEMA["rollout"]["num_generations"].default
    assert recipe.updates_per_step == 1 and recipe.source == "<dict>"


def test_schema_describes_every_key_for_forms():
    assert tuple(SCHEMA) == SECTIONS
    for section, keys in SCHEMA.items():
        for name, key in keys.items():
            assert key.name == name and key.help, (section, name)
            assert key.type in {"int", "float", "str", "bool", "choice", "list[str]", "list[float]"}
            if key.type == "choice":
                assert key.default in key.allowed or key.name == "loss_type"
    assert SCHEMA["algorithm"]["preset"].allowed == tuple(VARIANTS)
    assert SCHEMA["algorithm"]["epsilon_high"].optional
    assert SCHEMA["task"]["reward_funcs"].default == ["exact_match"]
    json.dumps({s: {k: vars(v) for k, v in keys.items()} for s, keys in SCHEMA.items()})


def test_find_recipe_takes_paths_and_names_unknown_ones(tmp_path):
    path = write(tmp_path, "[run]\nmax_steps = 3\n")
    assert find_recipe(str(path)) == path
    with pytest.raises(RecipeError, match="recipe 'grpp': no such file, and not a recipe name; allowed names: .*grpo"):
        find_recipe("grpp")


def test_training_docs_describe_every_recipe_key():
    docs = (RECIPES_DIR.parent / "docs" / "training.md").read_text()
    for section, keys in SCHEMA.items():
        assert f"### [{section}]" in docs
        missing = [name for name in keys if f"| `{name}` |" not in docs]
        assert not missing, (section, missing)
