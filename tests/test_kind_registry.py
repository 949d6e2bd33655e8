"""The kind registry (plaudit.model.kinds) is what rules, rendering and the contract check
know of a kind: each entry has its macro file, and the files that used to list kinds read it."""

from __future__ import annotations

from typing import get_args

import pytest

from plaudit.model.kinds import COLUMN_TYPES, KINDS, KindName
from plaudit.sqlfiles import sql_dir
from plaudit.sqlgen.render import environment


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_has_its_macro_taking_what_render_passes(name):
    kind = KINDS[name]
    assert (sql_dir() / kind.macro).is_file()
    macro = getattr(environment().get_template(kind.macro).module, name)
    assert macro.arguments[0] == "query"
    # render passes has_<column> for each optional column the macro declares
    known = {"levels", "default_level", "period", "timezone", "held", "window", "carry", "citus"}
    known |= {f"has_{column}" for column in kind.optional}
    assert set(macro.arguments[1:]) <= known
    assert ("period" in macro.arguments) == (kind.default_period is not None)
    assert ("carry" in macro.arguments) == kind.carries_progress


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kinds_columns_have_a_type(name):
    kind = KINDS[name]
    assert kind.required[0] == "user_id"
    assert set(kind.columns) <= set(COLUMN_TYPES)
    assert len(set(kind.columns)) == len(kind.columns)


def test_carrying_progress_needs_progress_and_skipping_done_users():
    for kind in KINDS.values():
        if kind.carries_progress:
            assert kind.has_progress and kind.skips_done
        if kind.skips_done and kind.has_progress:
            assert kind.carries_progress, kind.name
        if kind.anchors_progress:  # an anchored user is carried forward like a done one
            assert kind.carries_progress, kind.name


def test_every_macro_file_is_a_registered_kind():
    files = {p.stem for p in (sql_dir() / "kinds").glob("*.sql") if not p.stem.startswith("_")}
    assert files == set(KINDS)


def test_the_kind_name_type_lists_exactly_the_registered_kinds():
    assert set(get_args(KindName)) == set(KINDS)
