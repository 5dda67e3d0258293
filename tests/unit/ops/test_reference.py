"""docs/reference.md is generated from the declarations: it names every variable and param, and
every RECSYS_* variable the code mentions is declared."""

import re
from pathlib import Path

from recsys_tasks.config import environment
from recsys_tasks.config.params import PARAMS
from recsys_tasks.ops.reference import reference_markdown

REPO = Path(__file__).resolve().parents[3]


def test_the_reference_page_is_what_the_declarations_generate():
    page = (REPO / "docs" / "reference.md").read_text()
    assert page == reference_markdown(), "docs/reference.md is stale: run `recsys reference --out docs/reference.md`"
    for name in [*environment.VARIABLES, *PARAMS]:
        assert f"| `{name}` |" in page, name


def test_every_recsys_variable_the_code_mentions_is_declared():
    mentioned = set()
    for folder in ("recsys_tasks", "dags", "plugins"):
        for path in (REPO / folder).rglob("*.py"):
            mentioned |= set(re.findall(r"\bRECSYS_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    assert mentioned - set(environment.VARIABLES) == set()
