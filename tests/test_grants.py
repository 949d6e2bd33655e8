"""Revocation (`revoke: true`, `plaudit revoke`), manual awards, and progress read now."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest

from plaudit.runtime.deploy import deploy_rules

WINNERS = """
    slug: winners
    name: Winner
    kind: award
    revoke: {revoke}
    params:
      season: {{type: integer}}
    query: |
      SELECT w.user_id, w.won_at AS achieved_at, w.season AS scope
      FROM winners AS w
      WHERE {{{{ filter('w.season', 'season') }}}}
"""

COMMENTS = """
    slug: commentator
    name: Commentator
    kind: count
    revoke: true
    levels:
      - {key: bronze, name: Chatty, threshold: 2, points: 5}
      - {key: silver, name: Commentator, threshold: 3, points: 25}
    query: |
      SELECT g.user_id, g.occurred_at FROM given AS g
"""


def grants(sql, badge=None):
    return sql("SELECT user_id, level, scope, source FROM plaudit.user_badge "
               "WHERE %s::text IS NULL OR badge = %s ORDER BY 1, 2, 3", [badge, badge])


@pytest.fixture
def winners(project, engine_for, sql):
    def make(revoke):
        project.write("rules/winners.yaml", WINNERS.format(revoke=str(revoke).lower()))
        sql("CREATE TABLE winners (user_id bigint, season int, won_at timestamptz)")
        sql("INSERT INTO winners VALUES (1, 1, '2024-01-01'), (2, 1, '2024-01-01'), "
            "(2, 2, '2024-06-01')")
        engine = engine_for(project)
        deploy_rules(engine, project.rules())
        engine.backfill(project.rules())
        engine.award("winners", 3, "won the offline final", scope="1")
        return engine, project.rules()
    return make


def test_revoke_true_removes_rule_grants_the_query_no_longer_returns(winners, sql):
    engine, rules = winners(True)
    sql("DELETE FROM winners WHERE user_id = 2 AND season = 1")  # a result corrected
    [result] = engine.backfill(rules)
    assert (result.status, result.granted, result.revoked) == ("ok", 0, 1)
    assert grants(sql) == [(1, "default", "1", "rule"), (2, "default", "2", "rule"),
                           (3, "default", "1", "manual")]
    assert sql("SELECT user_id, level, scope, action, source, reason, run_id = %s "
               "FROM plaudit.grant_log ORDER BY log_id", [result.run_id]) == [
        (3, "default", "1", "award", "manual", "won the offline final", None),
        (2, "default", "1", "revoke", "rule", "no longer granted by the rule (revoke: true)",
         True)]
    assert sql("SELECT revoked FROM plaudit.run WHERE run_id = %s", [result.run_id]) == [(1,)]


def test_without_revoke_grants_stay(winners, sql):
    engine, rules = winners(False)
    sql("DELETE FROM winners")
    [result] = engine.backfill(rules)
    assert (result.status, result.revoked) == ("ok", 0)
    assert len(grants(sql)) == 4


def test_a_filtered_backfill_never_revokes(winners, sql):
    engine, rules = winners(True)
    sql("DELETE FROM winners WHERE season = 1")
    # a run for season 2 sees only season 2: season 1's grants are outside its view
    [result] = engine.backfill(rules, {"season": "2"})
    assert result.revoked == 0
    assert len(grants(sql)) == 4
    [result] = engine.backfill(rules)
    assert result.revoked == 2
    assert grants(sql) == [(2, "default", "2", "rule"), (3, "default", "1", "manual")]


def test_revoke_true_takes_back_levels_no_longer_reached(project, engine_for, sql):
    project.write("rules/commentator.yaml", COMMENTS)
    sql("CREATE TABLE given (user_id bigint, occurred_at timestamptz)")
    sql("INSERT INTO given VALUES (7, '2024-01-01'), (7, '2024-01-02'), (7, '2024-01-03')")
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    engine.backfill(project.rules())
    engine.award("commentator", 8, "imported", level="silver")
    sql("DELETE FROM given WHERE occurred_at = '2024-01-03'")  # spam removed
    [result] = engine.backfill(project.rules())
    assert result.revoked == 1
    assert grants(sql) == [(7, "bronze", "", "rule"), (8, "silver", "", "manual")]


def test_rules_never_move_or_overwrite_a_manual_grant(project, engine_for, sql):
    project.write("rules/commentator.yaml", COMMENTS)
    sql("CREATE TABLE given (user_id bigint, occurred_at timestamptz)")
    sql("INSERT INTO given VALUES (7, '2024-01-01'), (7, '2024-01-02')")
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    row = engine.award("commentator", 7, "migrated", level="bronze")
    assert (row["level"], row["outcome"], row["source"]) == ("bronze", "awarded", "manual")
    [result] = engine.backfill(project.rules())
    assert result.granted == 0
    assert sql("SELECT source, achieved_at > '2024-06-01', meta ->> 'reason' "
               "FROM plaudit.user_badge") == [("manual", True, "migrated")]


@pytest.fixture
def deployed(project, engine_for, sql, run_cli):
    project.write("rules/commentator.yaml", COMMENTS)
    project.write("rules/winners.yaml", WINNERS.format(revoke="false"))
    sql("CREATE TABLE given (user_id bigint, occurred_at timestamptz)")
    sql("CREATE TABLE winners (user_id bigint, season int, won_at timestamptz)")
    assert run_cli(project, "deploy").exit_code == 0
    return project


def test_award_and_revoke_on_the_command_line(deployed, run_cli, sql):
    result = run_cli(deployed, "award", "commentator", "7", "--level", "silver",
                     "--reason", "moderator's pick", "--at", "2024-02-01T10:00:00+00:00")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "", "awarded commentator/silver to user 7\n")
    assert sql("SELECT level, achieved_at::text, source, meta, seen_at FROM plaudit.user_badge"
               ) == [("silver", "2024-02-01 10:00:00+00", "manual",
                      {"reason": "moderator's pick", "by": "postgres"}, None)]
    again = run_cli(deployed, "award", "commentator", "7", "--level", "silver", "--reason", "x")
    assert (again.exit_code, again.stderr) == (0, (
        "user 7 already holds commentator/silver (manual grant, achieved 2024-02-01 10:00); "
        "nothing changed\n"))
    scoped = run_cli(deployed, "award", "winners", "7", "--scope", "3", "--reason", "final")
    assert (scoped.exit_code, scoped.stderr) == (0, "awarded winners/default [3] to user 7\n")

    case = run_cli(deployed, "user", "7")
    assert re.search(r"^  Commentator  2024-02-01 10:00 \(manual\)$", case.stdout, re.M)

    revoked = run_cli(deployed, "revoke", "commentator", "7", "--reason", "duplicate account")
    assert (revoked.exit_code, revoked.stderr) == (
        0, "revoked commentator/silver from user 7 (manual grant)\n"
           "note: no rule grants it again; `plaudit award` gives it back\n")
    assert sql("SELECT action, source, reason FROM plaudit.grant_log ORDER BY log_id") == [
        ("award", "manual", "moderator's pick"), ("award", "manual", "final"),
        ("revoke", "manual", "duplicate account")]
    none = run_cli(deployed, "revoke", "commentator", "7", "--reason", "again")
    assert (none.exit_code, none.stderr) == (
        1, "Error: user 7 holds no commentator grant to revoke\n")
    assert grants(sql) == [(7, "default", "3", "manual")]


def test_a_revoked_rule_grant_stays_revoked_until_awarded(deployed, run_cli, sql):
    sql("INSERT INTO given VALUES (7, '2024-01-01'), (7, '2024-01-02')")
    run_cli(deployed, "backfill")
    result = run_cli(deployed, "revoke", "commentator", "7", "--level", "bronze",
                     "--reason", "spam")
    assert (result.exit_code, result.stderr) == (0, (
        "revoked commentator/bronze from user 7 (rule grant)\n"
        "note: no rule grants it again; `plaudit award` gives it back\n"))
    assert grants(sql) == []
    assert sql("SELECT user_id, badge, level, scope, reason FROM plaudit.suppressed_grant") == [
        (7, "commentator", "bronze", "", "spam")]
    # a backfill does not grant it again, nor moves the revoked grant's date
    sql("INSERT INTO given VALUES (7, '2023-12-01')")
    result = run_cli(deployed, "backfill")
    assert result.exit_code == 0
    assert grants(sql) == [(7, "silver", "", "rule")]
    user = run_cli(deployed, "user", "7").stdout
    assert re.search(r"Revoked\n  \d{4}-\d\d-\d\d \d\d:\d\d  Commentator · Chatty: spam\n", user)
    # an award lifts the revocation; the grant is manual now
    result = run_cli(deployed, "award", "commentator", "7", "--level", "bronze",
                     "--reason", "appeal")
    assert result.exit_code == 0
    assert sql("SELECT count(*) FROM plaudit.suppressed_grant") == [(0,)]
    assert grants(sql) == [(7, "bronze", "", "manual"), (7, "silver", "", "rule")]


@pytest.mark.parametrize("args, message", [
    (["commentator", "7", "--reason", "r"],
     "Error: badge 'commentator' has several levels (bronze, silver): name one "
     "with --level\n"),
    (["commentator", "7", "--level", "gold", "--reason", "r"],
     "Error: badge 'commentator' has no level 'gold' (its levels: bronze, "
     "silver)\n"),
    (["nope", "7", "--reason", "r"],
     "Error: no deployed badge 'nope'\nHINT: run `plaudit deploy`\n"),
    (["winners", "7", "--reason", "  "], "Error: a manual grant needs a reason\n"),
])
def test_award_errors_exit_2(deployed, run_cli, sql, args, message):
    result = run_cli(deployed, "award", *args)
    assert (result.exit_code, result.stderr) == (2, message)
    assert grants(sql) == []


def test_award_needs_a_reason(deployed, run_cli):
    result = run_cli(deployed, "award", "winners", "7")
    assert result.exit_code == 2
    assert "Missing option '--reason'" in result.stderr


STREAK = """
    slug: daily
    name: Daily
    kind: streak
    timezone: UTC
    levels:
      - {key: bronze, name: Regular, threshold: 3}
    query: |
      SELECT g.user_id, g.occurred_at FROM given AS g
"""


def test_a_streak_broken_yesterday_reads_0_today_without_any_event(
        project, engine_for, sql, run_cli):
    project.write("rules/daily.yaml", STREAK)
    sql("CREATE TABLE given (user_id bigint, occurred_at timestamptz)")
    # today in UTC, whatever the session's time zone
    sql("""INSERT INTO given
           SELECT u, ((now() AT TIME ZONE 'UTC')::date - d + time '12:00') AT TIME ZONE 'UTC'
           FROM (VALUES (1, 1), (1, 2), (2, 2), (2, 3)) AS v (u, d)""")
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    engine.backfill(project.rules())
    # stored at the run: both users' latest run is 2 days long
    assert sql("SELECT user_id, value, next_level FROM plaudit.user_progress ORDER BY 1") == [
        (1, 2, "bronze"), (2, 2, "bronze")]
    # read now: user 1 was active yesterday and can go on today; user 2 missed yesterday
    assert sql("SELECT user_id, value FROM plaudit.current_progress ORDER BY 1") == [
        (1, 2), (2, 0)]
    assert run_cli(project, "user", "1").stdout.splitlines()[1:] == [
        "Badges", "  Daily  in progress", "    [#############-------]  2 / 3 days to Regular"]
    assert run_cli(project, "user", "2").stdout.splitlines()[1:] == [
        "Badges", "  Daily  locked", "    [--------------------]  0 / 3 days to Regular"]


def test_growth_does_not_judge_a_period_still_running(project, engine_for, sql):
    project.write("rules/growth.yaml", """
        slug: growth
        name: Growth
        kind: growth
        timezone: UTC
        levels:
          - {key: bronze, name: Rising, threshold: 50}
        query: |
          SELECT g.user_id, g.occurred_at FROM given AS g
    """)
    sql("CREATE TABLE given (user_id bigint, occurred_at timestamptz)")
    # one row last month, three this month: +200% so far, but this month has not ended
    sql("""INSERT INTO given
           SELECT 1, date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + d
           FROM unnest(ARRAY[interval '-1 day', '1 second', '2 seconds', '3 seconds']) AS d""")
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    [result] = engine.backfill(project.rules())
    assert (result.status, result.granted) == ("ok", 0)
    assert sql("SELECT value, next_level FROM plaudit.user_progress") == [(0, "bronze")]


def test_a_manual_award_is_news(deployed, run_cli, dsn):
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN plaudit_award")
        run_cli(deployed, "award", "winners", "7", "--scope", "3", "--reason", "final",
                "--at", "2024-02-01T10:00:00+00:00")
        run_cli(deployed, "award", "winners", "7", "--scope", "3", "--reason", "again")
        received = [json.loads(n.payload) for n in listener.notifies(timeout=0.3)]
    assert received == [{"user_id": 7, "badge": "winners", "level": "default", "name": "Winner",
                         "scope": "3", "points": 0, "achieved_at": "2024-02-01T10:00:00+00:00"}]


def test_backfill_reports_revocations(project, run_cli, sql):
    project.write("rules/winners.yaml", WINNERS.format(revoke="true"))
    sql("CREATE TABLE winners (user_id bigint, season int, won_at timestamptz)")
    sql("INSERT INTO winners VALUES (1, 1, '2024-01-01'), (2, 1, '2024-01-01')")
    run_cli(project, "deploy")
    run_cli(project, "backfill")
    sql("DELETE FROM winners WHERE user_id = 2")
    result = run_cli(project, "backfill")
    assert result.exit_code == 0
    assert re.fullmatch(r"  winners +0 granted, 1 revoked  \d+\.\ds\n", result.stderr)


def test_infinite_dates_and_values_are_shown_not_fatal(deployed, run_cli, engine_for, sql):
    # an app row dated 'infinity' reaches grants and progress; nothing that reads them dies
    sql("INSERT INTO plaudit.user_badge (user_id, badge, level, achieved_at) VALUES "
        "(7, 'commentator', 'bronze', 'infinity'), (7, 'winners', 'default', '-infinity')")
    sql("INSERT INTO plaudit.user_progress (user_id, badge, value, next_level, expires_at) "
        "VALUES (7, 'commentator', 'Infinity', 'silver', 'infinity'), "
        "(8, 'commentator', 'NaN', 'bronze', '-infinity'), (9, 'commentator', 'NaN', 'bronze', NULL)")
    case = run_cli(deployed, "user", "7")
    assert case.exit_code == 0, case.output
    assert case.stdout.splitlines() == [
        "User 7: 2 badges, 5 points",
        "Badges",
        "  Commentator · Chatty  infinity",
        "    [####################]  Infinity / 3 to Commentator",
        "  Winner                -infinity",
        "Rank by points: #1 of 1",  # a grant dated infinity ranks too
    ]
    other = run_cli(deployed, "user", "8")
    assert (other.exit_code, other.stdout.splitlines()[2:4]) == (
        0, ["  Commentator  locked",
            "    [--------------------]  0 / 2 to Chatty"])  # expired: reads 0
    nan = run_cli(deployed, "user", "9")
    assert (nan.exit_code, nan.stdout.splitlines()[2:4]) == (
        0, ["  Commentator  locked", "    [--------------------]  NaN / 2 to Chatty"])

    engine = engine_for(deployed)
    trophies = engine.trophy_case("7")
    latest, earliest = (g["achieved_at"] for g in reversed(trophies.grants))
    assert (str(latest), latest.isoformat(), f"{latest:%Y-%m-%d}") == ("infinity",) * 3
    assert (str(earliest), earliest.isoformat()) == ("-infinity", "-infinity")
    # they order as PostgreSQL orders them, and go back to it as themselves
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    assert earliest < moment < latest
    assert latest.astimezone(ZoneInfo("Asia/Tokyo")) is latest
    row = engine.db.conn.execute(
        "SELECT $1::timestamptz::text AS a, $2::timestamptz::text AS b", [latest, earliest]
    ).fetchone()
    assert row == {"a": "infinity", "b": "-infinity"}
    other_types = engine.db.conn.execute(
        "SELECT 'infinity'::date AS d, '-infinity'::timestamp AS t").fetchone()
    assert other_types is not None
    assert (str(other_types["d"]), str(other_types["t"])) == ("infinity", "-infinity")
    assert other_types["d"] > date(2024, 1, 1) and other_types["t"] < datetime(2024, 1, 1)
