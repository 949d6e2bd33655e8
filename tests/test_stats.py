"""Statistics (issue 14, second part): per badge and level, grants per week and the rules gone
quiet, checked against plain SQL over user_badge and user_progress written here on its own;
`plaudit stats`, and `plaudit status` flagging a quiet rule."""

from __future__ import annotations

import json
from datetime import date, timedelta

import psycopg
import pytest

from plaudit.errors import ConfigError
from plaudit.model.config import load_config
from plaudit.runtime import stats
from plaudit.runtime.deploy import deploy_rules

DEMO_RULES = ["commentator", "active_reader", "activity_streak", "podium", "top5_challenge"]

# The same statistics as plaudit.badge_stats, the obvious way: one query per column, whole
# table scans, distinct counts, a self-join for the first level.
INDEPENDENT = """
    WITH players AS (
        SELECT u.badge, count(DISTINCT u.user_id) AS players
        FROM (SELECT user_id, badge FROM plaudit.user_badge
              UNION SELECT user_id, badge FROM plaudit.user_progress) AS u
        GROUP BY u.badge
    ),
    counted AS (
        SELECT badge, level, count(DISTINCT user_id) AS holders, count(*) AS grants,
               count(*) FILTER (WHERE achieved_at > now() - interval '1 day'
                                  AND achieved_at <= now()) AS achieved_day,
               count(*) FILTER (WHERE achieved_at > now() - interval '7 days'
                                  AND achieved_at <= now()) AS achieved_week,
               count(*) FILTER (WHERE achieved_at > now() - interval '1 month'
                                  AND achieved_at <= now()) AS achieved_month,
               count(*) FILTER (WHERE awarded_at > now() - interval '1 day'
                                  AND awarded_at <= now()) AS awarded_day,
               count(*) FILTER (WHERE awarded_at > now() - interval '7 days'
                                  AND awarded_at <= now()) AS awarded_week,
               count(*) FILTER (WHERE awarded_at > now() - interval '1 month'
                                  AND awarded_at <= now()) AS awarded_month,
               count(*) FILTER (WHERE achieved_at >= %(since)s) AS achieved_since
        FROM plaudit.user_badge GROUP BY badge, level
    ),
    medians AS (
        SELECT h.badge, h.level,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY h.achieved_at - f.achieved_at) AS m
        FROM plaudit.user_badge AS h
        JOIN plaudit.badge_level AS hl ON hl.badge = h.badge AND hl.key = h.level
        JOIN plaudit.badge_level AS fl ON fl.badge = h.badge AND fl.position = 1
        JOIN plaudit.user_badge AS f ON f.user_id = h.user_id AND f.badge = h.badge
                                     AND f.level = fl.key AND f.scope = h.scope
        WHERE hl.position > 1 AND isfinite(h.achieved_at) AND isfinite(f.achieved_at)
        GROUP BY h.badge, h.level
    )
    SELECT l.badge, l.key, coalesce(c.holders, 0), coalesce(c.grants, 0),
           coalesce(p.players, 0), round(100.0 * c.holders / p.players, 2),
           coalesce(c.achieved_day, 0), coalesce(c.achieved_week, 0),
           coalesce(c.achieved_month, 0), coalesce(c.awarded_day, 0),
           coalesce(c.awarded_week, 0), coalesce(c.awarded_month, 0),
           coalesce(c.achieved_since, 0), m.m
    FROM plaudit.badge_level AS l
    LEFT JOIN counted AS c ON c.badge = l.badge AND c.level = l.key
    LEFT JOIN players AS p ON p.badge = l.badge
    LEFT JOIN medians AS m ON m.badge = l.badge AND m.level = l.key
    ORDER BY l.badge, l.position
"""


@pytest.fixture
def demo_stats(demo_project, engine_for, sql):
    """A few bundled rules backfilled on small demo data, then the grants no rule makes: a
    higher level without the first, a level held in two scopes, progress in a scope only,
    grants of the last day, week and month, one dated infinity."""
    for path in demo_project.path.joinpath("rules").glob("*.yaml"):
        if path.name.split(".")[0] not in DEMO_RULES:
            path.unlink()
    demo_project.write("plaudit.yaml", "timezone: Europe/Berlin\n")
    sql("SELECT * FROM demo_generate(400, 30000)")
    engine = engine_for(demo_project)
    deploy_rules(engine, demo_project.rules())
    engine.backfill(demo_project.rules())
    nobody = sql("SELECT max(id) + 1 FROM users")[0][0]  # no comments, no progress
    holder = sql("SELECT user_id FROM plaudit.user_badge WHERE badge = 'commentator' "
                 "AND level = 'silver' ORDER BY user_id LIMIT 1")[0][0]
    engine.award("commentator", nobody, "test", level="gold")
    engine.award("commentator", nobody + 1, "test", level="bronze", scope="x")
    engine.award("commentator", holder, "test", level="bronze", scope="x")
    sql("INSERT INTO plaudit.user_progress (user_id, badge, scope, value, next_level) "
        "VALUES (%s, 'commentator', 'y', 1, 'bronze'), (%s, 'commentator', 'y', 1, 'bronze')",
        [nobody + 2, holder])
    # recent grants, in each window
    for level, ago in [("bronze", "2 hours"), ("silver", "3 days"), ("gold", "20 days"),
                       ("bronze", "40 days")]:
        sql("UPDATE plaudit.user_badge SET achieved_at = now() - %s::interval, "
            "awarded_at = now() - %s::interval / 2 WHERE (user_id, badge, level, scope) IN ("
            "SELECT user_id, badge, level, scope FROM plaudit.user_badge "
            "WHERE badge = 'commentator' AND level = %s AND achieved_at < now() - interval "
            "'1 year' ORDER BY user_id LIMIT 3)", [ago, ago, level])
    sql("UPDATE plaudit.user_badge SET achieved_at = 'infinity' WHERE (user_id, badge, level) "
        "= (SELECT user_id, badge, level FROM plaudit.user_badge WHERE badge = 'active_reader' "
        "AND level = 'silver' ORDER BY user_id LIMIT 1)")
    return demo_project, engine


def test_badge_stats_equal_plain_sql_on_demo_data(demo_stats, sql):
    _, engine = demo_stats
    since = date(2026, 1, 1)
    start = stats.start_of(since, "Europe/Berlin")
    got = [tuple(row.values()) for row in stats.badge_stats(engine, since)]
    assert got == sql(INDEPENDENT, {"since": start})
    by_level = {(r[0], r[1]): r for r in got}
    # the cases the fixture set up are exercised, not vacuous
    assert by_level["commentator", "gold"][4] > by_level["commentator", "gold"][2] > 0
    assert by_level["commentator", "bronze"][3] > by_level["commentator", "bronze"][2]
    assert by_level["commentator", "bronze"][6] >= 3  # achieved in the last day
    assert by_level["commentator", "silver"][7] >= 3 and by_level["commentator", "gold"][8] >= 1
    assert by_level["commentator", "bronze"][9] >= 3  # awarded in the last day
    assert by_level["commentator", "silver"][13] > timedelta(0)
    assert by_level["podium", "gold"][2] > 0  # a medal per challenge: scoped grants
    assert by_level["top5_challenge", "top5"][3] > by_level["top5_challenge", "top5"][2]
    assert by_level["commentator", "bronze"][13] is None  # the first level has none


def test_badge_stats_of_some_badges_and_without_since(demo_stats, sql):
    _, engine = demo_stats
    some = stats.badge_stats(engine, badges=["podium", "commentator"])
    assert [r["badge"] for r in some] == ["commentator"] * 3 + ["podium"] * 3
    assert {r["achieved_since"] for r in some} == {None}
    whole = {(r["badge"], r["level"]): r for r in stats.badge_stats(engine)}
    for row in some:
        assert row == {**whole[row["badge"], row["level"]], "achieved_since": None}


def test_grants_per_week_in_the_configured_timezone_with_empty_weeks(demo_stats, sql):
    _, engine = demo_stats
    sql("DELETE FROM plaudit.user_badge WHERE achieved_at >= '2025-06-02 00:00 Europe/Berlin' "
        "AND achieved_at < '2025-06-16 00:00 Europe/Berlin'")  # two weeks without grants
    counted = dict(sql("""
        SELECT date_trunc('week', achieved_at AT TIME ZONE 'Europe/Berlin')::date, count(*)
        FROM plaudit.user_badge WHERE achieved_at <= now() GROUP BY 1"""))
    weeks = stats.grants_per_week(engine)
    first = min(counted)
    this_week = sql("SELECT date_trunc('week', now() AT TIME ZONE 'Europe/Berlin')::date")[0][0]
    assert [w["week"] for w in weeks] == [
        first + timedelta(weeks=n) for n in range((this_week - first).days // 7 + 1)]
    assert [w["grants"] for w in weeks] == [counted.get(w["week"], 0) for w in weeks]
    by_week = {w["week"]: w["grants"] for w in weeks}
    assert by_week[date(2025, 6, 2)] == by_week[date(2025, 6, 9)] == 0  # gaps are filled
    since = stats.grants_per_week(engine, date(2026, 1, 7), ["commentator"])
    assert since[0]["week"] == date(2026, 1, 5)  # the Monday of that ISO week
    assert sum(w["grants"] for w in since) == sql(
        "SELECT count(*) FROM plaudit.user_badge WHERE badge = 'commentator' AND achieved_at "
        ">= '2026-01-05 00:00 Europe/Berlin' AND achieved_at <= now()")[0][0]


def test_a_week_starts_on_monday_midnight_in_the_timezone(project, deployed, sql):
    project.write("plaudit.yaml", "timezone: Europe/Berlin\n")
    engine = deployed(AWARD.format(slug="helper", **INCREMENTAL))
    # in Berlin: Monday 11 March 00:30, and Sunday 10 March 23:30
    for user, moment in [(1, "2024-03-10 23:30+00"), (2, "2024-03-10 22:30+00")]:
        sql("INSERT INTO plaudit.user_badge (user_id, badge, level, achieved_at, source) "
            "VALUES (%s, 'helper', 'default', %s, 'manual')", [user, moment])
    weeks = stats.grants_per_week(engine)
    assert [(w["week"], w["grants"]) for w in weeks[:2]] == [
        (date(2024, 3, 4), 1), (date(2024, 3, 11), 1)]
    assert stats.grants_per_week(engine, date(2999, 1, 1)) == []  # a since after now


# -- rules gone quiet ------------------------------------------------------------------------

AWARD = """
    slug: {slug}
    name: Rule {slug}
    kind: award
    enabled: {enabled}
    triggers: {triggers}
    query: |
      SELECT 1::bigint AS user_id, '2024-01-01'::timestamptz AS achieved_at {where}
"""
INCREMENTAL = {"triggers": "[ping]", "where": "WHERE {{ affected('1') }}", "enabled": "true"}

# case -> (the rule's settings, its runs: (mode, hours ago, granted)), whether it is quiet
QUIET_CASES = {
    "events_kept_coming_nothing_granted": (
        {}, [("incremental", 160, 0), ("incremental", 80, 0), ("incremental", 2, 0)], True),
    "granted_something_recently": (
        {}, [("incremental", 160, 0), ("incremental", 50, 1), ("incremental", 2, 0)], False),
    "a_backfill_granted_in_the_window": (
        {}, [("incremental", 160, 0), ("backfill", 100, 5), ("incremental", 2, 0)], False),
    "granted_only_before_the_window": (
        {}, [("incremental", 200, 3), ("incremental", 160, 0), ("incremental", 2, 0)], True),
    "no_events": ({}, [], False),
    "events_stopped": ({}, [("incremental", 160, 0), ("incremental", 30, 0)], False),
    "events_only_lately": ({}, [("incremental", 100, 0), ("incremental", 2, 0)], False),
    "only_backfills": ({}, [("backfill", 160, 0), ("backfill", 2, 0)], False),
    "disabled_rule": (
        {"enabled": "false"}, [("incremental", 160, 0), ("incremental", 2, 0)], False),
    "rule_without_triggers": (
        {"triggers": "[]", "where": ""}, [("incremental", 160, 0), ("incremental", 2, 0)],
        False),
}


def add_runs(sql, slug, runs):
    for mode, hours, granted in runs:
        sql("INSERT INTO plaudit.run (badge, mode, status, started_at, finished_at, granted) "
            "VALUES (%s, %s, 'ok', now() - %s * interval '1 hour', "
            "now() - %s * interval '1 hour', %s)", [slug, mode, hours, hours, granted])


@pytest.mark.parametrize("case", QUIET_CASES)
def test_quiet_rules(case, deployed, sql):
    settings, runs, quiet = QUIET_CASES[case]
    engine = deployed(AWARD.format(slug="r", **{**INCREMENTAL, **settings}))
    add_runs(sql, "r", runs)
    found = stats.quiet_rules(engine, 7)
    assert [q["badge"] for q in found] == (["r"] if quiet else [])
    if quiet:
        incremental = [h for mode, h, _ in runs if mode == "incremental" and h <= 168]
        assert found[0]["runs"] == len(incremental)
        granted = [h for _, h, g in runs if g]
        assert (found[0]["last_granted_at"] is None) == (not granted)


def test_the_window_is_the_given_number_of_days(deployed, sql):
    engine = deployed(AWARD.format(slug="r", **INCREMENTAL))
    add_runs(sql, "r", [("incremental", 60, 0), ("incremental", 1, 0)])
    assert [q["badge"] for q in stats.quiet_rules(engine, 3)] == ["r"]
    assert stats.quiet_rules(engine, 7) == []  # no run in the first day of 7
    assert stats.quiet_rules(engine, 0) == []  # off


def test_status_flags_a_quiet_rule_and_quiet_days_0_turns_it_off(project, deployed, sql,
                                                                  run_cli):
    deployed(AWARD.format(slug="r", **INCREMENTAL))
    sql("UPDATE plaudit.badge SET due = NULL")
    add_runs(sql, "r", QUIET_CASES["events_kept_coming_nothing_granted"][1])
    result = run_cli(project, "status")
    assert (result.exit_code, result.stderr) == (1, (
        "attention: 1 rule granted nothing in 7 days while its trigger events kept coming "
        "(r): is a query or a threshold wrong? (`plaudit stats` lists them; quiet_days in "
        "plaudit.yaml sets the days, 0 turns this check off)\n"))
    assert result.stdout.splitlines()[4].split()[:2] == ["r", "quiet"]
    report = json.loads(run_cli(project, "status", "--json").stdout)
    assert [q["badge"] for q in report["quiet_rules"]] == ["r"]
    assert report["quiet_days"] == 7
    project.write("plaudit.yaml", "quiet_days: 0\n")
    assert run_cli(project, "status").exit_code == 0


@pytest.mark.parametrize("text, message", [
    ("quiet_days: -1\n", "plaudit.yaml:1: 'quiet_days' must be a whole number of days (0: never)"),
    ("quiet_days: soon\n", "plaudit.yaml:1: 'quiet_days' must be a whole number of days (0: never)"),
])
def test_quiet_days_must_be_a_whole_number(project, text, message):
    project.write("plaudit.yaml", text)
    with pytest.raises(ConfigError) as exc:
        load_config(project.path)
    assert str(exc.value) == message


# -- plaudit stats ---------------------------------------------------------------------------

@pytest.fixture
def small(project, deployed, sql):
    """Two badges with grants made by hand at known times: helper (bronze, silver) and
    writer (one level); user 3 took 10 days from bronze to silver, user 2 20 days."""
    project.write("plaudit.yaml", "timezone: Europe/Berlin\n")
    engine = deployed(
        AWARD.format(slug="writer", **INCREMENTAL),
        """
        slug: helper
        name: Helper
        kind: award
        levels:
          - {key: bronze, name: Bronze}
          - {key: silver, name: Silver}
        query: |
          SELECT 1::bigint AS user_id, now() AS achieved_at, 'bronze' AS level WHERE false
        """)
    for user, badge, level, at in [
        (1, "helper", "bronze", "2024-03-04 09:00"), (2, "helper", "bronze", "2024-03-05 09:00"),
        (3, "helper", "bronze", "2024-03-06 09:00"), (2, "helper", "silver", "2024-03-25 09:00"),
        (3, "helper", "silver", "2024-03-16 09:00"), (1, "writer", "default", "2024-03-12 09:00"),
    ]:
        sql("INSERT INTO plaudit.user_badge (user_id, badge, level, achieved_at, awarded_at, "
            "source) VALUES (%s, %s, %s, %s::timestamp AT TIME ZONE 'Europe/Berlin', "
            "'2024-05-01', 'manual')", [user, badge, level, at])
    sql("INSERT INTO plaudit.user_progress (user_id, badge, value, next_level) VALUES "
        "(4, 'helper', 1, 'bronze')")
    add_runs(sql, "writer", QUIET_CASES["events_kept_coming_nothing_granted"][1])
    return engine


def test_stats_prints_levels_weeks_and_quiet_rules(project, small, run_cli):
    result = run_cli(project, "stats", "--since", "2024-03-05")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:5] == [
        "badge   level    holders  players  rarity   achieved 24h/7d/month  "
        "awarded 24h/7d/month  since 2024-03-05  median from first",
        "------  -------  -------  -------  -------  ---------------------  "
        "--------------------  ----------------  -----------------",
        "helper  bronze         3        4  75.00%   0/0/0                  "
        "0/0/0                                2",
        "helper  silver         2        4  50.00%   0/0/0                  "
        "0/0/0                                2  15d",
        "writer  default        1        1  100.00%  0/0/0                  "
        "0/0/0                                1",
    ]
    weeks = lines[lines.index("grants per week:") + 3:]
    assert weeks[:3] == ["2024-W10  2024-03-04       3  [####################]",
                         "2024-W11  2024-03-11       2  [#############-------]",
                         "2024-W12  2024-03-18       0  [--------------------]"]
    assert lines[-4:-1] == [
        "rules gone quiet (no grant in 7 days while their trigger events kept coming):",
        "rule    runs  first run         last run          last granted",
        "------  ----  ----------------  ----------------  ------------------"]
    assert lines[-1].split()[:2] == ["writer", "3"]
    assert lines[-1].endswith("not in the run log")


def test_stats_json(project, small, run_cli, sql):
    report = json.loads(run_cli(project, "stats", "--json", "-s", "helper").stdout)
    assert (report["since"], report["timezone"], report["quiet_days"]) == (
        None, "Europe/Berlin", 7)
    assert report["quiet_rules"] == []  # writer is not selected
    assert report["levels"][1] == {
        "badge": "helper", "level": "silver", "holders": 2, "grants": 2, "players": 4,
        "rarity": 50, "achieved_day": 0, "achieved_week": 0, "achieved_month": 0,
        "awarded_day": 0, "awarded_week": 0, "awarded_month": 0, "achieved_since": None,
        "median_from_first_seconds": 15 * 86400}
    assert report["weeks"][0] == {"week": "2024-03-04", "iso_week": "2024-W10", "grants": 3}
    this_week = sql("SELECT date_trunc('week', now() AT TIME ZONE 'Europe/Berlin')::date")
    assert report["weeks"][-1]["week"] == this_week[0][0].isoformat()


def test_stats_says_which_selected_badges_are_not_deployed(project, small, run_cli):
    project.write("rules/later.yaml", AWARD.format(slug="later", **INCREMENTAL))
    result = run_cli(project, "stats", "-s", "later", "-s", "writer", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == "note: not deployed: later\n"
    assert [r["badge"] for r in json.loads(result.stdout)["levels"]] == ["writer"]


@pytest.mark.parametrize("args, says", [
    (["--select", "nobody"], "--select 'nobody' matches no rule"),
    (["--since", "soon"], "Invalid value for '--since'"),
    (["--quiet-days", "-1"], "Invalid value for '--quiet-days'"),
])
def test_bad_stats_input_exits_2(project, small, run_cli, args, says):
    result = run_cli(project, "stats", *args)
    assert result.exit_code == 2 and says in result.stderr, result.stderr


def test_settings_are_the_callers_again_afterwards(small, dsn):
    with psycopg.connect(dsn) as conn:
        before = conn.execute("SHOW work_mem").fetchone()
        conn.execute("SELECT * FROM plaudit.badge_stats()").fetchall()
        conn.execute("SELECT * FROM plaudit.grants_per_week()").fetchall()
        assert conn.execute("SELECT current_setting('work_mem'), current_setting('jit'), "
                            "current_setting('enable_nestloop')").fetchone() == (
            before[0], "on", "on")


@pytest.fixture
def dashboard(dsn, sql):
    """A role of this test's own (roles belong to the whole server)."""
    role = f"dashboard_{dsn.rsplit('/', 1)[1]}"
    sql(f'CREATE ROLE "{role}"')
    yield role
    sql("RESET ROLE")
    sql(f'DROP OWNED BY "{role}"')
    sql(f'DROP ROLE "{role}"')


def test_a_dashboard_role_needs_only_execute_and_select(small, sql, dashboard):
    sql(f'GRANT USAGE ON SCHEMA plaudit TO "{dashboard}"')
    sql(f'SET ROLE "{dashboard}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        sql("SELECT * FROM plaudit.badge_stats()")  # not PUBLIC's
    sql("RESET ROLE")
    sql("GRANT EXECUTE ON FUNCTION plaudit.badge_stats(timestamptz, text[]), "
        "plaudit.grants_per_week(timestamptz, text, text[]), plaudit.quiet_rules(int) "
        f'TO "{dashboard}"')
    sql("GRANT SELECT ON plaudit.badge_stats, plaudit.grants_per_week, plaudit.quiet_rules "
        f'TO "{dashboard}"')
    sql(f'SET ROLE "{dashboard}"')
    assert len(sql("SELECT * FROM plaudit.badge_stats")) == 3
    assert sql("SELECT badge FROM plaudit.quiet_rules") == [("writer",)]
    assert sql("SELECT count(*) > 0 FROM plaudit.grants_per_week") == [(True,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        sql("SELECT * FROM plaudit.user_badge")  # nothing else of plaudit's
