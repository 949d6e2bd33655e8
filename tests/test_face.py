"""The badge's face in rule files and plaudit.yaml (model/face.py): what loads, and the exact
message and line of every problem. Offline; the trophy case itself is tests/test_trophy_case.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from plaudit.authoring.validate import validate
from plaudit.errors import ConfigError, RuleError
from plaudit.model.config import load_config
from plaudit.model.face import Category, LevelText, Translation, is_locale
from plaudit.model.rules import load_rule

K = "rules/commentator.yaml"
# Nine lines; cases append from line 10 on.
RULE = """\
slug: commentator
name: Commentator
description: Joins the discussion.
kind: count
levels:
  - {key: bronze, name: Chatty, threshold: 10, points: 5}
  - {key: silver, name: Commentator, threshold: 100, points: 25}
query: |
  SELECT c.author_id AS user_id, c.created_at AS occurred_at FROM comments AS c
"""

FACE = """\
category: community
secret: true
order: -2
i18n:
  fr:
    name: Commentateur
    levels:
      bronze: {name: Bavard, description: A écrit 10 commentaires., hint: Écrivez-en 10.}
  pt-BR: {description: Comentários.}
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "rules" / "commentator.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return load_rule(path)


def test_the_face_loads(tmp_path: Path) -> None:
    levels = RULE.replace(
        "points: 5}", "points: 5,\n     description: Wrote 10 comments., hint: Write 10.}")
    rule = load(tmp_path, levels + FACE)
    assert (rule.category, rule.secret, rule.order) == ("community", True, -2)
    assert (rule.category_line, rule.levels[0].description, rule.levels[0].hint) == (
        11, "Wrote 10 comments.", "Write 10.")
    assert (rule.levels[1].description, rule.levels[1].hint) == (None, None)
    assert rule.i18n == (
        Translation("fr", "Commentateur", None, (
            LevelText("bronze", "Bavard", "A écrit 10 commentaires.", "Écrivez-en 10."),)),
        Translation("pt-br", None, "Comentários.", ()),  # locales are kept lower-case
    )


def test_without_a_face_the_defaults_hold(tmp_path: Path) -> None:
    rule = load(tmp_path, RULE)
    assert (rule.category, rule.secret, rule.order, rule.i18n) == (None, False, None, ())
    assert [(lv.description, lv.hint) for lv in rule.levels] == [(None, None)] * 2


def test_an_award_without_levels_translates_its_default_level(tmp_path: Path) -> None:
    text = RULE.replace("kind: count", "kind: award").split("levels:")[0] + (
        "query: SELECT 1\ni18n: {fr: {levels: {default: {hint: Soyez là.}}}}\n")
    rule = load(tmp_path, text)
    assert rule.i18n == (Translation("fr", None, None, (LevelText("default", hint="Soyez là."),)),)


INVALID = [
    pytest.param("category: Community\n",
                 [f"{K}:10: 'category' must match [a-z0-9_]+"], id="category-not-a-key"),
    pytest.param("secret: yes please\n",
                 [f"{K}:10: 'secret' must be true or false"], id="secret-not-a-boolean"),
    pytest.param("order: 1.5\n", [f"{K}:10: 'order' must be an integer"], id="order-not-integer"),
    pytest.param("order: true\n", [f"{K}:10: 'order' must be an integer"], id="order-boolean"),
    pytest.param("i18n: [fr]\n", [f"{K}:10: 'i18n' must be a mapping of locale to texts, like "
                                  "{fr: {name: ...}}"], id="i18n-not-a-mapping"),
    pytest.param("i18n:\n  french: {name: x}\n",
                 [f"{K}:11: i18n: 'french' must be a locale like fr or pt-BR"], id="bad-locale"),
    pytest.param("i18n:\n  pt_BR: {name: x}\n",
                 [f"{K}:11: i18n: 'pt_BR' must be a locale like fr or pt-BR"],
                 id="underscore-locale"),
    pytest.param("i18n:\n  fr: {name: x}\n  FR: {name: y}\n",
                 [f"{K}:12: i18n: locale 'FR' is given twice (first at line 11)"],
                 id="locale-twice-in-another-case"),
    pytest.param("i18n:\n  fr: Commentateur\n",
                 [f"{K}:11: i18n.fr must be a mapping of name, description and levels"],
                 id="locale-not-a-mapping"),
    pytest.param("i18n:\n  fr:\n    name: x\n    hint: y\n",
                 [f"{K}:13: unknown key 'hint'"], id="hint-is-a-level-text"),
    pytest.param("i18n:\n  fr: {name: '  '}\n",
                 [f"{K}:11: 'i18n.fr.name' must be a non-empty string"], id="empty-name"),
    pytest.param("i18n:\n  fr:\n    levels: [bronze]\n",
                 [f"{K}:12: 'i18n.fr.levels' must be a mapping of level key to texts, like "
                  "{bronze: {name: ...}}"], id="levels-not-a-mapping"),
    pytest.param("i18n:\n  fr:\n    levels:\n      gold: {name: Or}\n",
                 [f"{K}:13: i18n.fr.levels: 'gold' is not a level of this rule (its levels: "
                  "bronze, silver)"], id="level-the-rule-does-not-define"),
    pytest.param("i18n:\n  fr:\n    levels:\n      bronze: Bavard\n",
                 [f"{K}:13: i18n.fr.levels.bronze must be a mapping of name, description and "
                  "hint"], id="level-not-a-mapping"),
    pytest.param("i18n:\n  fr:\n    levels:\n      bronze: {name: Bavard, icon: x.svg}\n",
                 [f"{K}:13: unknown key 'icon'"], id="icons-are-not-translated"),
    pytest.param("i18n:\n  fr:\n    levels:\n      bronze: {hint: 3}\n",
                 [f"{K}:13: 'i18n.fr.levels.bronze.hint' must be a non-empty string"],
                 id="hint-not-text"),
    pytest.param("categroy: community\n",
                 [f"{K}:10: unknown key 'categroy' (did you mean 'category'?)"], id="typo"),
]


@pytest.mark.parametrize(("extra", "expected"), INVALID)
def test_invalid_face(tmp_path: Path, extra: str, expected: list[str]) -> None:
    with pytest.raises(RuleError) as error:
        load(tmp_path, RULE + extra)
    assert [str(p) for p in error.value.problems] == expected


@pytest.mark.parametrize(("level", "expected"), [
    pytest.param("description: 7", "'description' must be a non-empty string", id="description"),
    pytest.param("hint: ''", "'hint' must be a non-empty string", id="empty-hint"),
    pytest.param("hnit: x", "unknown key 'hnit' (did you mean 'hint'?)", id="typo"),
])
def test_invalid_level_texts(tmp_path: Path, level: str, expected: str) -> None:
    with pytest.raises(RuleError) as error:
        load(tmp_path, RULE.replace("points: 5}", f"points: 5, {level}}}"))
    assert [str(p) for p in error.value.problems] == [f"{K}:6: {expected}"]


CATEGORIES = """\
categories:
  reading: Reading
  community: {name: Community, i18n: {fr: Communauté, pt-BR: Comunidade}}
"""


def test_categories_load_in_the_order_written(tmp_path: Path) -> None:
    (tmp_path / "plaudit.yaml").write_text(CATEGORIES, encoding="utf-8")
    assert load_config(tmp_path).categories == (
        Category("reading", "Reading", (), 2),
        Category("community", "Community", (("fr", "Communauté"), ("pt-br", "Comunidade")), 3),
    )


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("categories: [reading]\n", "plaudit.yaml:1: 'categories' must be a mapping of "
                 "category key to name, in the order the trophy case shows them", id="a-list"),
    pytest.param("categories:\n  Reading: Reading\n",
                 "plaudit.yaml:2: category 'Reading' must match [a-z0-9_]+", id="bad-key"),
    pytest.param("categories:\n  reading: 3\n", "plaudit.yaml:2: category 'reading' must be a "
                 "name, or {name: ..., i18n: {fr: ...}}", id="not-a-name"),
    pytest.param("categories:\n  reading: {i18n: {fr: Lecture}}\n",
                 "plaudit.yaml:2: missing required key 'name'", id="no-name"),
    pytest.param("categories:\n  reading: {name: Reading, icon: r.svg}\n",
                 "plaudit.yaml:2: unknown key 'icon'", id="unknown-key"),
    pytest.param("categories:\n  reading: {name: Reading, i18n: {fr: ''}}\n",
                 "plaudit.yaml:2: categories.reading.i18n.fr must be a non-empty string",
                 id="empty-translation"),
    pytest.param("categories:\n  reading:\n    name: Reading\n    i18n: {f: Lecture}\n",
                 "plaudit.yaml:4: categories.reading.i18n: 'f' must be a locale like fr or "
                 "pt-BR", id="bad-locale"),
])
def test_invalid_categories(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "plaudit.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)
    assert str(error.value) == expected


def test_a_category_plaudit_yaml_does_not_list_is_a_problem_at_its_line(tmp_path: Path) -> None:
    load(tmp_path, RULE + "category: comunity\n")
    (tmp_path / "plaudit.yaml").write_text(CATEGORIES, encoding="utf-8")
    problems = validate(load_config(tmp_path)).problems
    assert [str(p) for p in problems] == [
        f"{K}:10: category 'comunity' is not one of plaudit.yaml's categories "
        "(reading, community)"]
    # without `categories:` any category goes
    (tmp_path / "plaudit.yaml").write_text("timezone: UTC\n", encoding="utf-8")
    assert validate(load_config(tmp_path)).problems == []


@pytest.mark.parametrize(("text", "ok"), [
    ("fr", True), ("pt-BR", True), ("fr_CA", True), ("zh-Hant-TW", True), ("FR", True),
    ("f", False), ("french", False), ("fr-", False), ("", False), ("fr CA", False),
])
def test_what_a_requested_locale_may_look_like(text: str, ok: bool) -> None:
    assert is_locale(text) is ok
