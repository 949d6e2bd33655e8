"""Rendering offline: helpers, placeholders, the single-SELECT check, errors with file:line."""

from __future__ import annotations

import pytest

from plaudit.errors import ParamError, RenderError
from plaudit.sqlgen.render import bind_params, render, render_query

RULE = """
    slug: {slug}
    name: Test
    kind: {kind}
    triggers: [comment_created]
    params:
      challenge_id: {{type: bigint}}
      title: {{type: text}}
    levels:
      - {{key: bronze, name: Bronze, threshold: 2}}
    query: |
{query}
"""


def make_rule(project, query, kind="count", slug="probe"):
    body = "\n".join("      " + line for line in query.strip("\n").splitlines())
    project.write(f"rules/{slug}.yaml", RULE.format(slug=slug, kind=kind, query=body))
    [rule] = project.rules()
    return rule


def test_helpers_render_shape_not_values(project):
    rule = make_rule(
        project,
        """
        SELECT c.author_id AS user_id, c.created_at AS occurred_at
        FROM comments c
        WHERE {{ affected('c.author_id') }}
          AND {{ filter('c.post_id', 'challenge_id') }}
          AND c.body LIKE '100%' || {{ param('title') }}
          {% if is_incremental() %}AND c.id IN (SELECT (payload->>'id')::bigint FROM {{ batch }} b){% endif %}
          -- mode: {{ mode }}
    """,
    )
    assert render_query(rule, "backfill").splitlines() == [
        "SELECT c.author_id AS user_id, c.created_at AS occurred_at",
        "FROM comments c",
        "WHERE TRUE",
        "  AND (($1::text[])[1]::bigint IS NULL OR c.post_id = ($1::text[])[1]::bigint)",
        "  AND c.body LIKE '100%' || ($1::text[])[2]::text",
        "  ",
        "  -- mode: backfill",
    ]
    incremental = render_query(rule, "incremental").splitlines()
    # a count rule reading `batch` maps events to users itself: done users are read too
    assert incremental[2] == (
        "WHERE c.author_id IN (SELECT plaudit_b.user_id FROM pg_temp.plaudit_batch AS plaudit_b "
        "WHERE plaudit_b.type IN ('comment_created') "
        "AND (plaudit_b.rule IS NULL OR plaudit_b.rule = 'probe'))"
    )
    assert incremental[5] == (
        "  AND c.id IN (SELECT (payload->>'id')::bigint FROM (SELECT event_id, type, user_id, "
        "occurred_at, payload FROM pg_temp.plaudit_batch WHERE type IN ('comment_created') "
        "AND (rule IS NULL OR rule = 'probe')) b)"
    )


def held_all(column, levels):
    """How many levels the user holds by the rule, counting only grants dated no later than
    the batch's earliest event, equals the rule's levels."""
    return (
        f"(SELECT count(*) FROM plaudit.user_badge AS plaudit_done "
        f"WHERE plaudit_done.user_id = {column} AND plaudit_done.badge = 'probe' "
        "AND plaudit_done.scope = '' AND plaudit_done.source = 'rule' "
        "AND plaudit_done.achieved_at <= "
        "(SELECT min(plaudit_first.occurred_at) FROM pg_temp.plaudit_batch AS plaudit_first "
        "WHERE plaudit_first.type IN ('comment_created') AND (plaudit_first.rule IS NULL "
        f"OR plaudit_first.rule = 'probe'))) = {levels}"
    )


TRUSTED = (
    "coalesce((SELECT plaudit_due.due IS NULL FROM plaudit.badge AS plaudit_due "
    "WHERE plaudit_due.slug = 'probe'), false)"
)


@pytest.mark.parametrize(
    ("kind", "columns", "skips"),
    [
        ("count", "c.created_at AS occurred_at", True),
        ("sum", "c.created_at AS occurred_at, 1 AS amount", True),
        ("gauge", "1 AS value, c.created_at AS achieved_at", True),
        ("award", "c.created_at AS achieved_at", True),
        # a scope not seen yet has every level to reach
        ("count", "c.created_at AS occurred_at, c.post_id AS scope", False),
        # a streak's progress (the current run) goes on after its last level
        ("streak", "c.created_at AS occurred_at", False),
        # a month's growth is dated at the month, before the event completing it
        ("growth", "c.created_at AS occurred_at", False),
    ],
)
def test_done_users_are_left_out_only_where_that_is_exact(
    project, kind, columns, skips
):
    rule = make_rule(
        project,
        f"SELECT c.author_id AS user_id, {columns} FROM comments c "
        "WHERE {{ affected('c.author_id') }} AND {{ unfinished('c.post_id') }}",
        kind=kind,
    )
    assert render_query(rule, "backfill").endswith("WHERE TRUE AND TRUE")
    where = render_query(rule, "incremental").split(" WHERE ", 1)[1]
    users = (
        "SELECT plaudit_b.user_id FROM pg_temp.plaudit_batch AS plaudit_b "
        "WHERE plaudit_b.type IN ('comment_created') "
        "AND (plaudit_b.rule IS NULL OR plaudit_b.rule = 'probe')"
    )
    if skips and kind in ("count", "sum"):
        # anchored users (done ones among them) go on from their progress row
        # the users left to read, from an array (an InitPlan: probed by index, helpers.sql)
        assert where.startswith(
            f"c.author_id IN (SELECT unnest(ARRAY({users} AND NOT coalesce(({TRUSTED} AND ")
        assert "plaudit_anchor.through_at < (SELECT min(plaudit_first.occurred_at)" in where
        # the levels below the progress row's next one are held (the probe has one level)
        assert (
            "CASE WHEN plaudit_anchor.next_level = 'bronze' THEN ARRAY[]::text[] "
            "WHEN plaudit_anchor.next_level IS NULL THEN ARRAY['bronze']::text[] END"
        ) in where
        assert where.endswith("), false)))) AND TRUE")
    elif skips:
        done = f"{TRUSTED} AND {held_all('plaudit_b.user_id', 1)}"
        assert where.startswith(f"c.author_id IN (SELECT unnest(ARRAY({users} AND NOT ({done}")
        if kind == "award":  # no progress: a done user is left out wherever the rule says
            assert where.endswith(f" AND NOT ({TRUSTED} AND {held_all('c.post_id', 1)})")
        else:  # progress is carried forward from through_at, for the batch's users only
            assert "plaudit_through.scope = '') < (SELECT min(plaudit_first.occurred_at)" in where
            assert where.endswith("))) AND TRUE")
    else:
        assert where == f"c.author_id IN ({users}) AND TRUE"


def test_render_is_deterministic(demo_project):
    for rule in demo_project.rules():
        assert render(rule, "backfill").sql == render(rule, "backfill").sql


@pytest.mark.parametrize(
    "query, message",
    [
        pytest.param(
            "SELECT b.user_id, b.occurred_at\nFROM {{ batch }} b",
            "rules/probe.yaml:12: probe: `batch` is only defined in incremental mode; "
            "use it inside {% if is_incremental() %}",
            id="batch-outside-incremental",
        ),
        pytest.param(
            "SELECT user_id, occurred_at\nFROM t WHERE {{ challenge }}",
            "rules/probe.yaml:12: template error: 'challenge' is undefined",
            id="undefined-name",
        ),
        pytest.param(
            "SELECT user_id, occurred_at FROM t WHERE {{ param('nope') }}",
            "rules/probe.yaml:11: probe: unknown param 'nope' (declared: challenge_id, title)",
            id="unknown-param",
        ),
    ],
)
def test_template_errors_name_the_file_and_line(project, query, message):
    rule = make_rule(project, query)
    with pytest.raises(RenderError) as err:
        render_query(rule, "backfill")
    assert str(err.value) == message


def test_template_syntax_errors_point_into_the_yaml_file(project):
    rule = make_rule(
        project,
        """
        SELECT user_id, occurred_at
        FROM t
        WHERE {% if x %}
    """,
    )
    with pytest.raises(RenderError) as err:
        render_query(rule, "backfill")
    assert str(err.value).startswith("rules/probe.yaml:")
    assert "template error: Unexpected end of template" in str(err.value)


def test_sandbox_blocks_python_internals(project):
    rule = make_rule(project, "SELECT {{ ''.__class__.__mro__ }} AS user_id, 1 AS occurred_at")
    with pytest.raises(RenderError) as err:
        render_query(rule, "backfill")
    assert "template error" in str(err.value)


@pytest.mark.parametrize(
    "query, message",
    [
        ("DELETE FROM comments", "query must be a SELECT, found DELETE"),
        ("UPDATE users SET name = 'x'", "query must be a SELECT, found UPDATE"),
        ("DROP TABLE users", "query must be a SELECT, found DROP"),
        (
            "SELECT 1 AS user_id, now() AS occurred_at; SELECT 2",
            "query must be a single SELECT statement, found 2 statements",
        ),
        (
            "WITH d AS (DELETE FROM comments RETURNING author_id) SELECT author_id AS user_id, "
            "now() AS occurred_at FROM d",
            "query must not modify data (found DELETE)",
        ),
        (
            "SELECT 1 AS user_id, now() AS occurred_at INTO copy",
            "query must be a plain SELECT (no SELECT INTO, no FOR UPDATE)",
        ),
        (
            "SELECT author_id AS user_id, created_at AS occurred_at FROM comments FOR UPDATE",
            "query must be a plain SELECT (no SELECT INTO, no FOR UPDATE)",
        ),
    ],
    ids=["delete", "update", "ddl", "two-statements", "dml-cte", "select-into", "for-update"],
)
def test_only_a_single_select_is_accepted(project, query, message):
    rule = make_rule(project, query)
    with pytest.raises(RenderError) as err:
        render(rule, "backfill")
    assert str(err.value) == f"rules/probe.yaml:11: probe: {message}"


def test_syntax_errors_name_the_rule_and_line(project):
    rule = make_rule(
        project, "SELECT author_id AS user_id, created_at AS occurred_at\nFROM\nWHERE x"
    )
    with pytest.raises(RenderError) as err:
        render(rule, "backfill")
    assert (
        str(err.value)
        == 'rules/probe.yaml:13: probe: SQL syntax error: syntax error at or near "WHERE"'
    )


@pytest.mark.parametrize(
    "query, kind, message",
    [
        (
            "SELECT author_id AS user_id FROM comments",
            "count",
            "a count query must return user_id, occurred_at; missing column occurred_at",
        ),
        (
            "SELECT * FROM comments",
            "count",
            "name the query's columns instead of SELECT *: a count rule reads user_id, occurred_at, scope by name",
        ),
        (
            "SELECT author_id AS user_id, created_at FROM comments",
            "award",
            "a award query must return user_id, achieved_at; missing column achieved_at",
        ),
    ],
    ids=["count-missing", "star", "award-missing"],
)
def test_kind_columns_are_checked(project, query, kind, message):
    rule = make_rule(project, query, kind=kind)
    with pytest.raises(RenderError) as err:
        render(rule, "backfill")
    assert str(err.value) == f"rules/probe.yaml:11: probe: {message}"


def test_a_rule_without_triggers_has_no_incremental_rendering(demo_project):
    rule = next(r for r in demo_project.rules() if r.slug == "top5_challenge")
    with pytest.raises(RenderError) as err:
        render(rule, "incremental")
    assert str(err.value) == "top5_challenge: has no triggers, so it runs in backfill mode only"


def test_params_are_typed_before_binding(project):
    rule = make_rule(project, "SELECT author_id AS user_id, created_at AS occurred_at FROM c")
    assert bind_params(rule, {"challenge_id": " 42 ", "title": "O'Brien 100%"}) == [
        "42",
        "O'Brien 100%",
    ]
    assert bind_params(rule, {}) == [None, None]
    with pytest.raises(ParamError) as err:
        bind_params(rule, {"challenge_id": "1; DROP TABLE users"})
    assert str(err.value) == (
        "invalid value for param 'challenge_id': '1; DROP TABLE users' is not a valid bigint"
    )
    with pytest.raises(ParamError) as err:
        bind_params(rule, {"challenge_id": str(2**63)})
    assert "is not a valid bigint" in str(err.value)
    with pytest.raises(ParamError) as err:
        bind_params(rule, {"nope": "1"})
    assert str(err.value) == "unknown param 'nope' for rule probe (declared: challenge_id, title)"


@pytest.mark.parametrize(
    ("columns", "where", "windowed"),
    [
        ("", "{{ affected('c.author_id') }}", True),
        # a scope not seen yet has every level to reach
        (", c.post_id AS scope", "{{ affected('c.author_id') }}", False),
        # users found through `batch` are not the batch's users
        ("", "{% if is_incremental() %}c.post_id IN (SELECT (b.payload ->> 'id')::bigint "
         "FROM {{ batch }} AS b){% else %}TRUE{% endif %}", False),
    ],
)
def test_a_streak_reads_done_users_from_their_last_period_only_when_the_batch_names_them(
    project, columns, where, windowed
):
    query = f"SELECT c.author_id AS user_id, c.created_at AS occurred_at{columns} FROM comments c"
    rule = make_rule(project, f"{query} WHERE {where}", kind="streak")
    incremental = render(rule, "incremental").sql
    assert ("checked AS (" in incremental) is windowed
    assert "checked AS (" not in render(rule, "backfill").sql
