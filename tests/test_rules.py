"""Rule files: loading, defaults, and the exact message of every validation error."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from plaudit.errors import ConfigError, RuleError
from plaudit.model.rules import Level, Param, load_rule, load_rules
from plaudit.model.yamlsource import load_yaml

# Nine lines; cases append to it (line 10 onwards) or replace parts of it in place.
VALID = """\
slug: commentator
name: Commentator
kind: count
levels:
  - {key: bronze, name: Chatty, threshold: 10, points: 5}
  - {key: silver, name: Commentator, threshold: 100, points: 25}
query: |
  SELECT author_id AS user_id, created_at AS occurred_at
  FROM comments
"""

# Five lines, then one level per line: the first level is on line 6.
LEVELS_HEAD = """\
slug: commentator
name: Commentator
kind: count
query: SELECT 1
levels:
"""

FULL = """\
slug: commentator                 # [a-z0-9_]+, unique; the file name is <slug>.yaml
name: Commentator
description: Joins the discussion.
kind: count
triggers: [comment_created]
tags: [community]
enabled: true
params:
  challenge_id: {type: bigint}
levels:
  - {key: bronze, name: Chatty,      threshold: 10,   points: 5}
  - {key: silver, name: Commentator, threshold: 100,  points: 25}
  - {key: gold,   name: Town Crier,  threshold: 1000, points: 100, icon: icons/crier.svg}
period: week
timezone: Europe/Paris
revoke: true
timeout: 30s
query: |
  SELECT c.author_id AS user_id, c.created_at AS occurred_at
  FROM comments c
  WHERE {{ affected('c.author_id') }}
    AND {{ filter('c.challenge_id', 'challenge_id') }}
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def levels(*lines: str) -> str:
    return LEVELS_HEAD + "".join(f"  - {line}\n" for line in lines)


def problems(error: pytest.ExceptionInfo[RuleError]) -> list[str]:
    return [str(problem) for problem in error.value.problems]


def test_full_rule_loads_every_field(tmp_path: Path) -> None:
    path = write(tmp_path / "rules", "commentator.yaml", FULL)
    rule = load_rule(path)
    assert (rule.slug, rule.name, rule.kind) == ("commentator", "Commentator", "count")
    assert rule.description == "Joins the discussion."
    assert (rule.triggers, rule.tags, rule.enabled) == (("comment_created",), ("community",), True)
    assert rule.params == (Param("challenge_id", "bigint", 9),)
    assert rule.levels == (
        Level("bronze", "Chatty", 10, 5, None, 11),
        Level("silver", "Commentator", 100, 25, None, 12),
        Level("gold", "Town Crier", 1000, 100, "icons/crier.svg", 13),
    )
    assert {lv.key: lv for lv in rule.levels}["gold"].icon == "icons/crier.svg"
    assert (rule.period, rule.timezone, rule.revoke, rule.timeout) == (
        "week",
        "Europe/Paris",
        True,
        "30s",
    )
    assert rule.query.startswith("SELECT c.author_id AS user_id")
    assert rule.path == path
    assert rule.line == 1


def test_query_line_is_the_first_line_of_the_block(tmp_path: Path) -> None:
    rule = load_rule(write(tmp_path / "rules", "commentator.yaml", FULL))
    assert rule.query_line == 19  # the SELECT, not the `query: |` line
    assert rule.location() == "rules/commentator.yaml:19"
    assert rule.location(2) == "rules/commentator.yaml:21"  # WHERE {{ affected(...) }}
    assert rule.query.splitlines()[2].strip().startswith("WHERE")


@pytest.mark.parametrize(
    ("query", "line"),
    [
        pytest.param("query: SELECT 1\n", 8, id="plain-scalar-on-the-key-line"),
        pytest.param("query: |-   # comment\n  SELECT 1\n", 9, id="strip-chomping-and-comment"),
        pytest.param("query:\n  |\n    SELECT 1\n", 10, id="indicator-on-its-own-line"),
        pytest.param('query: "SELECT 1"\n', 8, id="quoted"),
    ],
)
def test_query_line_styles(tmp_path: Path, query: str, line: int) -> None:
    text = VALID.split("query:")[0] + "description: x\n" + query  # query on line 8
    rule = load_rule(write(tmp_path / "rules", "commentator.yaml", text))
    assert rule.query.strip() == "SELECT 1"
    assert rule.query_line == line


def test_defaults_of_optional_fields(tmp_path: Path) -> None:
    rule = load_rule(write(tmp_path / "rules", "commentator.yaml", VALID))
    assert rule.description == ""
    assert rule.triggers == ()
    assert rule.tags == ()
    assert rule.enabled is True
    assert rule.params == ()
    assert (rule.period, rule.timezone, rule.revoke, rule.timeout) == (None, None, False, None)
    assert {lv.key: lv for lv in rule.levels}["bronze"].icon is None


def test_empty_optional_values_mean_the_default(tmp_path: Path) -> None:
    text = VALID + "description:\ntriggers:\nenabled:\ntimezone:\n"
    rule = load_rule(write(tmp_path / "rules", "commentator.yaml", text))
    assert (rule.description, rule.triggers, rule.enabled, rule.timezone) == ("", (), True, None)


def test_points_default_to_zero(tmp_path: Path) -> None:
    rule = load_rule(
        write(tmp_path / "rules", "commentator.yaml", levels("{key: a, name: A, threshold: 1}"))
    )
    assert {lv.key: lv for lv in rule.levels}["a"].points == 0


def test_decimal_thresholds(tmp_path: Path) -> None:
    text = levels("{key: a, name: A, threshold: 0.1}", "{key: b, name: B, threshold: 2.5}")
    rule = load_rule(write(tmp_path / "rules", "commentator.yaml", text))
    assert [level.threshold for level in rule.levels] == [Decimal("0.1"), Decimal("2.5")]


def test_award_without_levels_has_one_level_named_after_the_badge(tmp_path: Path) -> None:
    text = "slug: founder\nname: Founding Member\nkind: award\nquery: SELECT 1\n"
    rule = load_rule(write(tmp_path / "rules", "founder.yaml", text))
    assert rule.levels == (Level("default", "Founding Member", None, 0, None, 1),)


def test_award_levels_need_no_thresholds_and_no_order(tmp_path: Path) -> None:
    text = levels(
        "{key: top1, name: Winner, points: 50}",
        "{key: top3, name: Podium, threshold: 3}",
        "{key: top2, name: Runner-up, threshold: 2}",
    ).replace("kind: count", "kind: award")
    rule = load_rule(write(tmp_path / "rules", "commentator.yaml", text))
    assert [(level.key, level.threshold) for level in rule.levels] == [
        ("top1", None),
        ("top3", 3),
        ("top2", 2),
    ]


@pytest.mark.parametrize(
    "timeout", ["30s", "500ms", "5min", "1h", "250", "10 s", 250, "1ms", "24h", "1440min"]
)
def test_valid_timeouts(tmp_path: Path, timeout: object) -> None:
    rule = load_rule(write(tmp_path / "rules", "commentator.yaml", VALID + f"timeout: {timeout}\n"))
    assert rule.timeout == str(timeout)


K = "rules/commentator.yaml"
TYPES = "bigint, integer, numeric, text, boolean, date, timestamptz, uuid"
INVALID = [
    # whole file
    pytest.param("", [f"{K}:1: file is empty"], id="empty-file"),
    pytest.param("# only a comment\n", [f"{K}:1: file is empty"], id="comments-only"),
    pytest.param(
        "- a\n- b\n",
        [f"{K}:1: expected a mapping at the top level, got a list"],
        id="top-level-list",
    ),
    pytest.param(
        "hello\n",
        [f"{K}:1: expected a mapping at the top level, got a string"],
        id="top-level-scalar",
    ),
    pytest.param(
        "slug: commentator\nname: a: b\n",
        [f"{K}:2: invalid YAML: mapping values are not allowed here"],
        id="yaml-syntax-error",
    ),
    pytest.param(
        "slug: commentator\nkind: [count\nquery: x\n",
        [f"{K}:3: invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence)"],
        id="yaml-unclosed-flow-sequence",
    ),
    pytest.param(
        VALID + "---\nslug: other\n",
        [
            f"{K}:10: invalid YAML: but found another document"
            " (expected a single document in the stream)"
        ],
        id="yaml-two-documents",
    ),
    pytest.param(
        VALID + "name: Again\n",
        [f"{K}:10: duplicate key 'name' (first at line 2)"],
        id="duplicate-key",
    ),
    pytest.param(
        VALID.replace("points: 5}", "points: 5, points: 6}"),
        [f"{K}:5: duplicate key 'points' (first at line 5)"],
        id="duplicate-key-in-level",
    ),
    pytest.param(
        VALID + "owner: !foo bar\n",
        [
            f"{K}:10: invalid YAML value: could not determine a constructor for the tag '!foo'",
            f"{K}:10: unknown key 'owner'",
        ],
        id="unknown-yaml-tag",
    ),
    # keys
    pytest.param(VALID + "colour: red\n", [f"{K}:10: unknown key 'colour'"], id="unknown-key"),
    pytest.param(
        VALID + "trigers: [x]\n",
        [f"{K}:10: unknown key 'trigers' (did you mean 'triggers'?)"],
        id="unknown-key-typo",
    ),
    pytest.param(
        "description: hi\n",
        [f"{K}:1: missing required key '{key}'" for key in ("kind", "name", "query", "slug")],
        id="missing-everything",
    ),
    pytest.param(
        "slug: commentator\nkind: count\nquery: SELECT 1\n",
        [f"{K}:1: missing required key 'levels'", f"{K}:1: missing required key 'name'"],
        id="missing-name-and-levels",
    ),
    # slug, name, kind, query
    pytest.param(
        VALID.replace("slug: commentator", "slug: Commentator"),
        [f"{K}:1: 'slug' must match [a-z0-9_]+"],
        id="slug-pattern",
    ),
    pytest.param(
        VALID.replace("name: Commentator", "name: 5", 1),
        [f"{K}:2: 'name' must be a non-empty string"],
        id="name-not-a-string",
    ),
    pytest.param(
        VALID.replace("name: Commentator", "name:", 1),
        [f"{K}:2: 'name' must be a non-empty string"],
        id="name-empty",
    ),
    pytest.param(
        VALID.replace("kind: count", "kind: counter"),
        [
            f"{K}:3: unknown kind 'counter'"
            " (expected one of count, sum, streak, gauge, growth, award)"
        ],
        id="unknown-kind",
    ),
    pytest.param(
        VALID.replace("query: |", 'query: ""').split("  SELECT")[0],
        [f"{K}:7: 'query' must be a non-empty string"],
        id="query-empty",
    ),
    # levels
    pytest.param(
        LEVELS_HEAD.replace("levels:", "levels: []"),
        [f"{K}:5: 'levels' must be a non-empty list"],
        id="levels-empty",
    ),
    pytest.param(
        LEVELS_HEAD.replace("levels:", "levels: gold"),
        [f"{K}:5: 'levels' must be a non-empty list"],
        id="levels-not-a-list",
    ),
    pytest.param(
        levels("bronze"),
        [f"{K}:6: a level must be a mapping, not a string"],
        id="level-not-a-mapping",
    ),
    pytest.param(
        levels("{threshold: 10}"),
        [f"{K}:6: missing required key 'key'", f"{K}:6: missing required key 'name'"],
        id="level-missing-key-and-name",
    ),
    pytest.param(
        levels("{key: Bronze, name: B, threshold: 10}"),
        [f"{K}:6: 'key' must match [a-z0-9_]+"],
        id="level-key-pattern",
    ),
    pytest.param(
        levels("{key: bronze, name: A, threshold: 10}", "{key: bronze, name: B, threshold: 20}"),
        [f"{K}:7: duplicate level key 'bronze' (first at line 6)"],
        id="duplicate-level-key",
    ),
    pytest.param(
        levels("{key: a, name: A, colour: red, threshold: 1}"),
        [f"{K}:6: unknown key 'colour'"],
        id="unknown-level-key",
    ),
    pytest.param(
        levels("{key: a, name: A, treshold: 1}"),
        [
            f"{K}:6: missing required key 'threshold'",
            f"{K}:6: unknown key 'treshold' (did you mean 'threshold'?)",
        ],
        id="level-key-typo",
    ),
    pytest.param(
        levels("{key: a, name: A}"),
        [f"{K}:6: missing required key 'threshold'"],
        id="threshold-missing",
    ),
    pytest.param(
        levels("{key: a, name: A, threshold: 0}"),
        [f"{K}:6: 'threshold' must be a positive number"],
        id="threshold-zero",
    ),
    pytest.param(
        levels("{key: a, name: A, threshold: -5}"),
        [f"{K}:6: 'threshold' must be a positive number"],
        id="threshold-negative",
    ),
    pytest.param(
        levels("{key: a, name: A, threshold: ten}"),
        [f"{K}:6: 'threshold' must be a positive number"],
        id="threshold-string",
    ),
    pytest.param(
        levels("{key: a, name: A, threshold: true}"),
        [f"{K}:6: 'threshold' must be a positive number"],
        id="threshold-boolean",
    ),
    pytest.param(
        levels("{key: a, name: A, threshold: .inf}"),
        [f"{K}:6: 'threshold' must be a positive number"],
        id="threshold-infinite",
    ),
    pytest.param(
        levels("{key: a, name: A, threshold: 100}", "{key: b, name: B, threshold: 100}"),
        [f"{K}:7: threshold 100 does not increase on the previous level's 100"],
        id="threshold-equal",
    ),
    pytest.param(
        levels(
            "{key: a, name: A, threshold: 2.5}",
            "{key: b, name: B, threshold: 1.5}",
            "{key: c, name: C, threshold: 3}",
        ),
        [f"{K}:7: threshold 1.5 does not increase on the previous level's 2.5"],
        id="threshold-decreasing",
    ),
    pytest.param(
        LEVELS_HEAD + "  - key: a\n    name: A\n    threshold: 0\n",
        [f"{K}:8: 'threshold' must be a positive number"],
        id="block-level-points-at-the-value-line",
    ),
    pytest.param(
        levels("{key: a, name: A, threshold: 1, points: -1}"),
        [f"{K}:6: 'points' must be a non-negative integer"],
        id="points-negative",
    ),
    pytest.param(
        levels("{key: a, name: A, threshold: 1, points: 1.5}"),
        [f"{K}:6: 'points' must be a non-negative integer"],
        id="points-decimal",
    ),
    pytest.param(
        levels("{key: a, name: A, threshold: 1, icon: 5}"),
        [f"{K}:6: 'icon' must be a string"],
        id="icon-not-a-string",
    ),
    # triggers, tags, flags, description
    pytest.param(
        VALID + "triggers: comment_created\n",
        [f"{K}:10: 'triggers' must be a list"],
        id="triggers-not-a-list",
    ),
    pytest.param(
        VALID + "triggers:\n  - comment_created\n  - Comment-Liked\n",
        [f"{K}:12: trigger 'Comment-Liked' must match [a-z0-9_]+"],
        id="trigger-pattern",
    ),
    pytest.param(
        VALID + "tags: [community, 5]\n",
        [f"{K}:10: tag '5' must be a non-empty string"],
        id="tag-not-a-string",
    ),
    pytest.param(
        VALID + 'enabled: "yes"\n',
        [f"{K}:10: 'enabled' must be true or false"],
        id="enabled-string",
    ),
    pytest.param(
        VALID + "revoke: 1\n", [f"{K}:10: 'revoke' must be true or false"], id="revoke-number"
    ),
    pytest.param(
        VALID + "description: 5\n",
        [f"{K}:10: 'description' must be a string"],
        id="description-number",
    ),
    # params
    pytest.param(
        VALID + "params:\n  challenge_id: {type: int64}\n",
        [f"{K}:11: param 'challenge_id' has unknown type 'int64' (expected one of {TYPES})"],
        id="param-unknown-type",
    ),
    pytest.param(
        VALID + "params:\n  Challenge: {type: bigint}\n",
        [f"{K}:11: param name 'Challenge' must match [a-z_][a-z0-9_]*"],
        id="param-name-pattern",
    ),
    pytest.param(
        VALID + "params:\n  challenge_id: bigint\n",
        [f"{K}:11: param 'challenge_id' must be a mapping like {{type: bigint}}"],
        id="param-shorthand",
    ),
    pytest.param(
        VALID + "params:\n  challenge_id: {}\n",
        [f"{K}:11: missing required key 'type'"],
        id="param-missing-type",
    ),
    pytest.param(
        VALID + "params:\n  challenge_id: {type: bigint, default: 1}\n",
        [f"{K}:11: unknown key 'default'"],
        id="param-unknown-key",
    ),
    pytest.param(
        VALID + "params: [challenge_id]\n",
        [f"{K}:10: 'params' must be a mapping of name to {{type: T}}"],
        id="params-not-a-mapping",
    ),
    # period, timezone, timeout
    pytest.param(
        VALID + "period: fortnight\n",
        [f"{K}:10: 'period' must be one of day, week, month"],
        id="period-unknown",
    ),
    pytest.param(
        VALID + "timezone: Mars/Olympus\n",
        [f"{K}:10: unknown timezone 'Mars/Olympus'"],
        id="timezone-unknown",
    ),
    pytest.param(
        VALID + "timezone: 5\n", [f"{K}:10: 'timezone' must be a string"], id="timezone-number"
    ),
    pytest.param(
        VALID + "timeout: 30 seconds\n",
        [f"{K}:10: 'timeout' must be a duration like 30s, 500ms, 5min or 1h"],
        id="timeout-unit",
    ),
    pytest.param(
        VALID + "timeout: true\n",
        [f"{K}:10: 'timeout' must be a duration like 30s, 500ms, 5min or 1h"],
        id="timeout-boolean",
    ),
    *(
        pytest.param(
            VALID + f"timeout: {value}\n",
            [f"{K}:10: 'timeout' must be more than 0 and at most 24h"],
            id=f"timeout-{value}",
        )
        for value in ("0", "0s", "0ms", "00min", "999999h", "25h", "1441min", "86400001")
    ),
]


@pytest.mark.parametrize(("text", "expected"), INVALID)
def test_invalid_rule(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path / "rules", "commentator.yaml", text)
    with pytest.raises(RuleError) as error:
        load_rule(path)
    assert problems(error) == expected
    assert str(error.value) == "\n".join(expected)


def test_slug_must_match_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path / "rules", "talker.yaml", VALID)
    with pytest.raises(RuleError) as error:
        load_rule(path)
    assert problems(error) == [
        "rules/talker.yaml:1: slug 'commentator' does not match file name 'talker.yaml'"
    ]


def test_every_problem_of_every_file_in_one_error(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write(rules, "commentator.yaml", VALID)
    write(rules, "a.yaml", VALID.replace("commentator", "a") + "colour: red\n")
    write(rules, "b.yaml", VALID.replace("commentator", "b").replace("kind: count", "kind: x"))
    write(rules, "c.yaml", "slug: c\nname: a: b\n")
    write(
        rules,
        "d.yaml",
        levels("{key: a, name: A, threshold: 0}", "{key: a, name: B}").replace("commentator", "d"),
    )
    with pytest.raises(RuleError) as error:
        load_rules(rules)
    assert problems(error) == [
        "rules/a.yaml:10: unknown key 'colour'",
        "rules/b.yaml:3: unknown kind 'x'"
        " (expected one of count, sum, streak, gauge, growth, award)",
        "rules/c.yaml:2: invalid YAML: mapping values are not allowed here",
        "rules/d.yaml:6: 'threshold' must be a positive number",
        "rules/d.yaml:7: duplicate level key 'a' (first at line 6)",
        "rules/d.yaml:7: missing required key 'threshold'",
    ]


def test_duplicate_slug_across_files(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write(rules, "commentator.yaml", VALID)
    write(rules, "talker.yaml", "# copied\n" + VALID)
    with pytest.raises(RuleError) as error:
        load_rules(rules)
    assert problems(error) == [
        "rules/talker.yaml:2: duplicate slug 'commentator' (also in rules/commentator.yaml)",
        "rules/talker.yaml:2: slug 'commentator' does not match file name 'talker.yaml'",
    ]


def test_load_rules_sorted_by_slug_skipping_tests_and_dot_files(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write(rules, "zeta.yaml", VALID.replace("commentator", "zeta"))
    write(rules, "alpha.yaml", VALID.replace("commentator", "alpha"))
    write(rules, "alpha.test.yaml", "not: [a rule\n")
    write(rules, ".#alpha.yaml", "not: [a rule\n")
    write(rules, "notes.txt", "not: [a rule\n")
    assert [rule.slug for rule in load_rules(rules)] == ["alpha", "zeta"]


def test_a_missing_rules_folder_is_an_error_not_an_empty_rule_set(tmp_path: Path) -> None:
    # an empty set would let `deploy` offer to remove every badge
    with pytest.raises(ConfigError) as error:
        load_rules(tmp_path / "rules", root=tmp_path)
    assert str(error.value) == (
        "the rules folder rules/ does not exist (plaudit.yaml's `rules:` names it; "
        "the default is rules/)"
    )
    assert error.value.exit_code == 2
    (tmp_path / "badges").write_text("")
    with pytest.raises(ConfigError) as error:
        load_rules(tmp_path / "badges", root=tmp_path)
    assert str(error.value) == "the rules folder badges is a file, not a folder"


def test_an_empty_rules_folder_is_no_rules(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    assert load_rules(tmp_path / "rules") == []


def test_yml_files_are_rules_too(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write(rules, "zeta.yml", VALID.replace("commentator", "zeta"))
    write(rules, "alpha.yaml", VALID.replace("commentator", "alpha"))
    write(rules, "zeta.test.yml", "not: [a rule\n")
    write(rules, ".#zeta.yml", "not: [a rule\n")
    loaded = load_rules(rules)
    assert [(rule.slug, rule.file) for rule in loaded] == [
        ("alpha", "rules/alpha.yaml"),
        ("zeta", "rules/zeta.yml"),
    ]
    write(rules, "alpha.yml", VALID.replace("commentator", "alpha"))
    write(rules, "beta.yml", VALID.replace("commentator", "gamma"))
    with pytest.raises(RuleError) as error:
        load_rules(rules)
    assert problems(error) == [
        "rules/alpha.yml:1: duplicate slug 'alpha' (also in rules/alpha.yaml)",
        "rules/beta.yml:1: slug 'gamma' does not match file name 'beta.yml'",
    ]


def test_messages_name_files_relative_to_root(tmp_path: Path) -> None:
    path = write(tmp_path / "project" / "badges", "x.yaml", "slug: x\n")
    with pytest.raises(RuleError) as error:
        load_rule(path, root=tmp_path)
    assert problems(error)[0] == "project/badges/x.yaml:1: missing required key 'kind'"
    with pytest.raises(RuleError) as error:
        load_rules(path.parent, root=tmp_path / "project")
    assert problems(error)[0] == "badges/x.yaml:1: missing required key 'kind'"


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rules" / "commentator.yaml"
    path.parent.mkdir()
    path.write_bytes(b"slug: commentator\nname: caf\xe9\n")
    with pytest.raises(RuleError) as error:
        load_rule(path)
    assert problems(error) == [f"{K}:2: file is not valid UTF-8"]


# yamlsource: the located values the rule loader is built on


def test_yaml_keys_stay_text_and_values_know_their_lines() -> None:
    value, found = load_yaml("on: insert\nyes: [a,\n  b]\nq: |\n  one\n  two\n", "f.yaml")
    assert found == []
    assert value == {"on": "insert", "yes": ["a", "b"], "q": "one\ntwo\n"}
    assert (value.key_line("yes"), value.value_line("yes")) == (2, 2)
    assert value["yes"].item_line(1) == 3
    assert (value.key_line("q"), value.value_line("q")) == (4, 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "a: &x [*x]\n", "f.yaml:1: invalid YAML: recursive alias", id="recursive-alias"
        ),
        pytest.param(
            "a: 2024-13-45\n", "f.yaml:1: invalid YAML value: month must be in 1..12", id="bad-date"
        ),
        pytest.param(
            "a: 1\n\tb: 2\n",
            "f.yaml:2: invalid YAML: found character '\\t' that cannot start any token"
            " (while scanning for the next token)",
            id="tab",
        ),
        pytest.param(
            "a: \x00\n",
            "f.yaml:1: invalid YAML: unacceptable character #x0000:"
            " special characters are not allowed",
            id="control-character",
        ),
        pytest.param(
            "? [a]\n: 1\n", "f.yaml:1: mapping keys must be plain names", id="complex-key"
        ),
        pytest.param(
            "a: " + "[" * 5000, "f.yaml:1: invalid YAML: nested too deeply", id="too-deep"
        ),
    ],
)
def test_yaml_problems(text: str, message: str) -> None:
    _, found = load_yaml(text, "f.yaml")
    assert [str(problem) for problem in found] == [message]
