"""The README stays true: the two commands come first and every setting is documented."""

from __future__ import annotations

import re

from pydantic import BaseModel

from retrain_assets.constants import REPO_ROOT
from retrain_assets.settings import Settings

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, key + ".")
        else:
            keys.append(key)
    return keys


def test_every_setting_is_in_the_readme_table():
    table = README.split("### Every setting", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", table, flags=re.MULTILINE))
    assert set(_keys(Settings)) == documented


def test_readme_shows_make_demo_and_make_test_first_then_make_ui():
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block and "make test" in first_block
    assert README.index("make ui") > README.index("make test")


def test_ci_calls_make_test():
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()


def test_ci_does_no_more_than_the_readmes_make_test():
    """A green CI must mean a newcomer's `make test` is green: .ci/run sets nothing up itself."""
    commands = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    assert commands[-1] == "make test"
    assert all(c.startswith(("set ", "cd ")) for c in commands[:-1]), commands


def test_make_test_uses_a_dagster_home_of_its_own_whatever_the_environment_says():
    import os
    import subprocess

    env = {**os.environ, "DAGSTER_HOME": "/nonexistent/users/home", "RETRAIN_CONFIG": "/nonexistent/user.yaml"}
    plan = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(REPO_ROOT), "test"], env=env,
                          capture_output=True, text=True, check=True).stdout
    runs = [line for line in plan.splitlines() if ".venv/bin/" in line]
    assert len(runs) == 2 and all('DAGSTER_HOME="$home" RETRAIN_CONFIG= ' in line for line in runs), plan
    assert "/nonexistent" not in plan
