"""docs/ci.md: the workflow and the shell recipe are the same steps,
start nothing by hand and run the tests under CI=true through the plugin."""
from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks(lang: str) -> list[str]:
    text = open(os.path.join(ROOT, "docs", "ci.md")).read()
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _workflow_commands() -> list[str]:
    (yml,) = _blocks("yaml")
    cmds, in_run = [], False
    for line in yml.splitlines():
        m = re.match(r"\s+run: (\|)?(.*)", line)
        if m:
            in_run = m.group(1) == "|"
            if not in_run:
                cmds.append(m.group(2))
        elif in_run and line.startswith(" " * 10):
            cmds.append(line.strip())
        else:
            in_run = False
    return cmds


def test_the_workflow_and_the_recipe_are_the_same_steps():
    (recipe,) = _blocks("sh")
    steps = [ln for ln in recipe.splitlines() if ln and ln != "set -eu"]
    assert [c.removeprefix("sudo ") for c in _workflow_commands()] == steps
    assert steps[-1].startswith("CI=true ") and "pytest" in steps[-1]
    assert not any(re.search(r"xfrmd (serve|run)|LD_PRELOAD|conftest", s) for s in steps)
    assert any("pip install" in s and "xfrmd[test]" in s for s in steps)
