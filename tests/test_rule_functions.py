"""Each rule's incremental rows through a function of its own (008_boundary.sql,
install_rule_function), made, replaced and dropped by deploy, so that PL/pgSQL keeps the
rule's plan for the session. run_rule uses it only while it was made from the SQL being run
(else rule_rows runs that SQL); the boundary's side of it is in tests/test_boundary.py."""

from __future__ import annotations

from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.engine import Event
from sample_rules import commentator_rule
from test_events import day, seed_comments

# no triggers: backfills only, so no incremental function
POSTER = """
    slug: poster
    name: Poster
    kind: award
    triggers: []
    query: |
      SELECT p.author_id AS user_id, p.created_at AS achieved_at FROM posts AS p
"""


def functions(sql):
    """The rules' functions: (which rule and SQL they were made from, SECURITY DEFINER,
    executable by PUBLIC)."""
    return sql(
        "SELECT split_part(obj_description(f.oid, 'pg_proc'), ':', 1), f.prosecdef, "
        "has_function_privilege('public', f.oid, 'EXECUTE') "
        "FROM pg_proc AS f WHERE f.pronamespace = 'plaudit'::regnamespace "
        "AND f.proname LIKE 'rule\\_rows\\_%' ORDER BY 1")


def called(engine, events):
    """check() of `events` (rolled back): how many functions ran rule SQL, of the rules' own
    and rule_rows (entered, that is: a call that fails is not counted as one)."""
    conn = engine.db.conn
    # what earlier transactions counted is flushed once the session is idle: not seen below
    conn.execute("SELECT pg_stat_force_next_flush()")
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL track_functions = 'all'")
        engine.check(events)
        rows = conn.execute(
            "SELECT CASE WHEN funcname = 'rule_rows' THEN 'rule_rows' ELSE 'own' END AS kind, "
            "count(*) AS n FROM pg_stat_xact_user_functions "
            "WHERE funcname LIKE 'rule\\_rows%' GROUP BY 1").fetchall()
    return {r["kind"]: r["n"] for r in rows}


def test_deploy_makes_a_function_for_each_rule_with_triggers(deployed, sql):
    engine = deployed(commentator_rule(3, 5), POSTER)
    assert functions(sql) == [("plaudit rule commentator", False, False)]
    seed_comments(sql, [(7, day(d)) for d in (1, 2)], track=False)
    assert called(engine, [Event("comment_created", 7, day(3))]) == {"own": 1}


def test_a_changed_rule_runs_its_new_sql_and_a_removed_one_loses_its_function(
    deployed, project, sql
):
    engine = deployed(commentator_rule(3, 5))
    seed_comments(sql, [(7, day(d)) for d in (1, 2)], track=False)
    project.write("rules/commentator.yaml", commentator_rule(2, 5))
    deploy_rules(engine, project.rules())
    [grant] = engine.check([Event("comment_created", 7, day(3))])
    assert (grant["level"], grant["achieved_at"]) == ("bronze", day(2))
    # without triggers now: backfills only
    project.write("rules/commentator.yaml", POSTER.replace("poster", "commentator"))
    deploy_rules(engine, project.rules(), force=True)
    assert functions(sql) == []
    project.write("rules/commentator.yaml", commentator_rule(3, 5))
    deploy_rules(engine, project.rules(), force=True)
    assert functions(sql) == [("plaudit rule commentator", False, False)]
    (project.path / "rules" / "commentator.yaml").unlink()
    deploy_rules(engine, project.rules(), complete=True, force=True)
    assert functions(sql) == []


def test_a_function_not_made_from_the_sql_being_run_is_not_used(deployed, project, sql):
    engine = deployed(commentator_rule(3, 5))
    seed_comments(sql, [(7, day(d)) for d in (1, 2)], track=False)
    # e.g. the compiled SQL changed by hand, or a function left by something else
    sql("SELECT plaudit.install_rule_function('commentator', %s)",
        ["SELECT 1 AS user_id, '' AS scope, 'bronze' AS level, now() AS achieved_at, "
         "1 AS value, NULL::jsonb AS meta, false AS is_progress"])
    assert called(engine, [Event("comment_created", 7, day(3))]) == {"rule_rows": 1}
    # the next deploy puts it right, even of an unchanged rule
    deploy_rules(engine, project.rules())
    assert called(engine, [Event("comment_created", 7, day(3))]) == {"own": 1}


def test_a_runner_role_set_after_deploy_gets_the_rules_functions_too(
    deployed, project, run_cli, sql, runner_role
):
    deployed(commentator_rule(3, 5))
    assert run_cli(project, "init", "--runner-role", runner_role).exit_code == 0
    assert sql("SELECT f.prosecdef, pg_get_userbyid(f.proowner), "
               "has_function_privilege('public', f.oid, 'EXECUTE') FROM pg_proc AS f "
               "WHERE f.oid = to_regprocedure(plaudit.rule_function('commentator') "
               "|| '(text[], text)')") == [(True, runner_role, False)]


def test_a_name_the_tables_no_longer_have_fails_the_run_as_rule_rows_would(deployed, sql):
    """The rule's function has no variables a name in the rule's SQL could fall back to: a
    column dropped after deploy fails the incremental run (as it fails a backfill through
    rule_rows), instead of reading as NULL and granting nothing, quietly."""
    sql("ALTER TABLE comments ADD COLUMN level int NOT NULL DEFAULT 1")
    engine = deployed(commentator_rule(2, 5).replace(
        "WHERE {{ affected('c.author_id') }}", "WHERE {{ affected('c.author_id') }} AND level > 0"))
    seed_comments(sql, [(7, day(1))], track=False)
    sql("ALTER TABLE comments DROP COLUMN level")
    seed_comments(sql, [(7, day(2))], track=False)
    assert engine.check([Event("comment_created", 7, day(2))]) == []
    engine.db.conn.commit()
    [(status, message)] = sql("SELECT status, message FROM plaudit.run WHERE mode = 'incremental'")
    assert status == "failed" and 'column "level" does not exist' in message
