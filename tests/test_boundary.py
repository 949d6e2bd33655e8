"""Rule SQL is untrusted (issue 19): every probe the red team ran, as a rule under the runner
role, through every path that executes rule SQL (backfill, run, check, the pg_cron job
procedures, test, preview). Each is refused ("permission denied", or PostgreSQL's refusal to
change role inside the boundary) and leaves nothing behind: no file written, no app or
plaudit row changed, the queue and `meta` intact, no lock or setting left in the session.

The probes hide behind app functions (SECURITY INVOKER, executable by PUBLIC, as an app
would have), so that what is tested is the runtime boundary, not validate's early refusal
of known functions.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from plaudit.runtime.engine import Event
from test_rule_functions import called

# name -> (the probe's body, what the database says when it is refused)
PROBES = {
    # set_config('role', 'none') dropped back to the login role (a superuser)
    "escape_role": (
        "PERFORM set_config('role', 'none', true); "
        "EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'touch ' || {marker});",
        'cannot set parameter "role" within security-definer function',
    ),
    "copy_to_program": (
        "EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'touch ' || {marker});",
        "pg_execute_server_program role to COPY to or from an external program",
    ),
    "read_server_file": (
        "PERFORM pg_read_file('/etc/hostname');",
        "permission denied for function pg_read_file",
    ),
    "take_the_queue": (
        "PERFORM plaudit.take_events(1000000);",
        "permission denied for function take_events",
    ),
    "forge_a_grant": (
        "INSERT INTO plaudit.user_badge (user_id, badge, level, achieved_at) "
        "VALUES (99, 'victim', 'default', now());",
        "permission denied for table user_badge",
    ),
    "award_by_hand": (
        "PERFORM plaudit.award_badge(99, 'victim', NULL, '', 'forged');",
        "permission denied for function award_badge",
    ),
    "drop_the_runner_role": (
        "DELETE FROM plaudit.meta WHERE key = 'rule_role';",
        "permission denied for table meta",
    ),
    "write_app_data": (
        "UPDATE users SET name = 'pwned';",
        "permission denied for table users",
    ),
    "kill_a_session": (
        "PERFORM pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid();",
        "must be a superuser to terminate superuser process",
    ),
}

EVENTS = """
events:
  comment_created: {table: comments, on: insert, user: author_id, at: created_at}
"""

PROBE_RULE = """
    slug: {name}
    name: {name}
    kind: award
    triggers: [comment_created]
    query: |
      SELECT c.author_id AS user_id, c.created_at AS achieved_at
      FROM comments AS c
      WHERE {{{{ affected('c.author_id') }}}} AND probe_{name}()
    tests:
      probe:
        given:
          comments: [{{author_id: 1, created_at: 2024-01-01 10:00}}]
        expect: [{{user_id: 1, achieved_at: 2024-01-01 10:00}}]
"""

VICTIM = """
    slug: victim
    name: Victim
    kind: award
    triggers: []
    query: |
      SELECT u.id AS user_id, u.created_at AS achieved_at FROM users AS u WHERE u.id = 1
"""

PATHS = ("backfill", "run", "check", "job", "test", "preview")


@pytest.fixture
def guarded(project, run_cli, sql, dsn, runner_role):
    """A project with every probe as a rule, the runner role set up and granted the app
    tables the rules read; returns the marker file a successful OS command would create."""
    marker = Path(os.environ.get("TMPDIR", "/tmp")) / f"plaudit_probe_{dsn.rsplit('/', 1)[1]}"
    marker.unlink(missing_ok=True)
    project.write("plaudit.yaml", EVENTS)
    project.write("rules/victim.yaml", VICTIM)
    for name, (body, _) in PROBES.items():
        sql(f"CREATE FUNCTION probe_{name}() RETURNS boolean LANGUAGE plpgsql AS "
            f"$$ BEGIN {body.format(marker=repr(str(marker)))} RETURN true; END $$")
        project.write(f"rules/{name}.yaml", PROBE_RULE.format(name=name))
    sql("INSERT INTO users (id, name, created_at) VALUES (1, 'one', '2024-01-01')")
    sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, 1, 'article', 'hello', '2024-01-01')")
    # a comment for backfills to read (before init installs the capture trigger: no event)
    sql("INSERT INTO comments (post_id, author_id, body, created_at) "
        "VALUES (1, 1, 'x', '2024-01-15')")
    result = run_cli(project, "init", "--runner-role", runner_role)
    assert result.exit_code == 0, result.stderr
    sql(f"GRANT SELECT ON comments, users TO {runner_role}")
    assert run_cli(project, "backfill", "--select", "victim").exit_code == 0
    yield marker
    marker.unlink(missing_ok=True)


def state(sql):
    """What no probe may change."""
    return (
        sql("SELECT id, name FROM users ORDER BY id"),
        sql("SELECT key, value FROM plaudit.meta ORDER BY key"),
        sql("SELECT user_id, badge, level FROM plaudit.user_badge ORDER BY 1, 2, 3"),
        sql("SELECT count(*) FROM plaudit.event"),
    )


def attempt(path, project, run_cli, sql, dsn, engine_for):
    """Run every probe through `path`; returns {probe: what the user is told about it}."""
    names = sorted(PROBES)
    if path == "preview":  # one rule at a time
        told = {}
        for name in names:
            result = run_cli(project, "preview", name)
            assert result.exit_code != 0
            told[name] = result.output
        return told
    if path in ("backfill", "test"):
        result = run_cli(project, path, *[a for name in names for a in ("--select", name)])
        assert result.exit_code == 1
        return dict.fromkeys(names, result.output)
    sql("INSERT INTO comments (post_id, author_id, body, created_at) "
        "VALUES (1, 1, 'x', '2024-02-01')")
    if path == "run":
        result = run_cli(project, "run")
        assert result.exit_code == 1
        return dict.fromkeys(names, result.output)
    if path == "check":
        sql("DELETE FROM plaudit.event")  # check() takes its events directly, not the queue
        engine = engine_for(project)
        with engine.db.conn.transaction():
            assert engine.check([Event("comment_created", 1)]) == []
    else:  # the events job, as pg_cron runs it
        with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(psycopg.Error):
            conn.execute("CALL plaudit.job_events()")
    return dict(sql("SELECT badge, message FROM plaudit.run WHERE status = 'failed'"))


@pytest.mark.parametrize("path", PATHS)
def test_every_probe_is_refused_on_every_path_and_leaves_nothing_behind(
        guarded, project, run_cli, sql, dsn, engine_for, path):
    before = state(sql)
    told = attempt(path, project, run_cli, sql, dsn, engine_for)
    for name, (_, refusal) in PROBES.items():
        # preview runs in a read-only transaction, which refuses a write before privileges
        refusals = (refusal, "read-only transaction") if path == "preview" else (refusal,)
        assert any(r in told[name] for r in refusals), (name, told[name])
    assert not guarded.exists(), "an OS command ran"
    after = state(sql)
    assert after[:3] == before[:3]
    assert after[3] == [(0,)]  # the queue: consumed by the run, never emptied by the rule
    # no session was terminated: this one is still fine
    assert sql("SELECT 1") == [(1,)]


def test_what_a_rule_leaves_in_its_session_is_undone(runner_role, project, engine_for, sql,
                                                     run_cli):
    """Settings and session advisory locks (validate refuses the functions; this is the
    second line): a rule taking the lock of another rule made it busy for good."""
    sql("CREATE FUNCTION sticky() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM set_config('search_path', 'nowhere', false); "
        "PERFORM set_config('statement_timeout', '0', false); "
        "PERFORM pg_advisory_lock(hashtext('plaudit'), hashtext('victim')); "
        "RETURN true; END $$")
    project.write("rules/a_sticky.yaml", """
        slug: a_sticky
        name: Sticky
        kind: award
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at FROM users AS u WHERE sticky()
    """)
    project.write("rules/victim.yaml", VICTIM)
    sql("INSERT INTO users (id, name, created_at) VALUES (1, 'one', '2024-01-01')")
    assert run_cli(project, "init", "--runner-role", runner_role).exit_code == 0
    sql(f"GRANT SELECT ON users TO {runner_role}")
    engine = engine_for(project)
    path = engine.db.conn.execute("SHOW search_path").fetchone()
    results = engine.backfill(project.rules())
    assert [(r.slug, r.status) for r in results] == [("a_sticky", "ok"), ("victim", "ok")]
    assert results[0].message is None
    assert sql("SELECT message FROM plaudit.run WHERE badge = 'a_sticky'") == [(
        "a_sticky: undone after the rule: an advisory lock",)]
    assert engine.db.conn.execute("SHOW search_path").fetchone() == path
    locks = engine.db.conn.execute(
        "SELECT count(*) AS n FROM pg_locks "
        "WHERE pid = pg_backend_pid() AND locktype = 'advisory'").fetchone()
    assert locks is not None and locks["n"] == 0


def test_a_test_cases_own_select_runs_behind_the_boundary_too(guarded, project, run_cli, sql):
    """`given: {table: SELECT ...}` is analysts' SQL as well: read through query_rows."""
    project.write("rules/victim.test.yaml", """
        tests:
          rows_from_a_select:
            given:
              comments: |
                SELECT 1 AS author_id, now() AS created_at WHERE probe_copy_to_program()
            expect: []
    """)
    result = run_cli(project, "test", "--select", "victim")
    assert result.exit_code == 1
    assert "pg_execute_server_program role to COPY to or from an external program" in (
        result.output)
    assert not guarded.exists(), "an OS command ran"


def test_a_rule_cannot_redirect_what_runs_after_it(guarded, project, run_cli, sql):
    """A rule that points search_path at a schema of its own must not get plaudit's SQL,
    which runs as the login user after the rule, to call its functions."""
    sql("CREATE TABLE pwned (at timestamptz)")
    sql("GRANT INSERT ON pwned TO PUBLIC")
    sql("CREATE SCHEMA evil")
    sql("GRANT USAGE ON SCHEMA evil TO PUBLIC")
    sql("CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS "
        "$$ INSERT INTO public.pwned VALUES (pg_catalog.now()) RETURNING pg_catalog.now() $$")
    sql("CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS "
        "$$ INSERT INTO public.pwned VALUES (pg_catalog.now()) RETURNING pg_catalog.now() $$")
    sql("CREATE FUNCTION redirect() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM set_config('search_path', 'evil, pg_catalog, public', false); RETURN true; "
        "END $$")
    project.write("rules/redirect.yaml", """
        slug: redirect
        name: Redirect
        kind: award
        query: |
          SELECT c.author_id AS user_id, c.created_at AS achieved_at FROM comments AS c
          WHERE redirect()
    """)
    assert run_cli(project, "deploy", "--select", "redirect").exit_code == 0
    result = run_cli(project, "backfill", "--select", "redirect")
    assert result.exit_code == 0, result.output
    assert sql("SELECT count(*) FROM pwned") == [(0,)]
    assert sql("SELECT status FROM plaudit.run WHERE badge = 'redirect'") == [("ok",)]


def test_a_runner_role_with_other_members_is_refused(project, run_cli, sql, runner_role):
    sql(f'CREATE ROLE "{runner_role}" NOLOGIN')
    sql(f'CREATE ROLE "{runner_role}_app" NOLOGIN')
    sql(f'GRANT "{runner_role}" TO "{runner_role}_app"')
    try:
        result = run_cli(project, "init", "--runner-role", runner_role)
        assert result.exit_code == 2
        assert (f"runner role {runner_role} has members besides postgres: {runner_role}_app"
                in result.stderr)
    finally:
        sql(f'DROP ROLE "{runner_role}_app"')


def test_an_app_role_needs_only_execute_on_the_api(guarded, project, run_cli, sql, dsn):
    """The capture trigger, track, check, unseen, mark_seen and trophy_case run as plaudit's
    owner: an app role with EXECUTE on them (and its own tables) needs no right on plaudit's
    tables."""
    app = f"app_{dsn.rsplit('/', 1)[1]}"
    sql(f'CREATE ROLE "{app}" NOLOGIN')
    try:
        sql(f'GRANT SELECT, INSERT ON comments TO "{app}"')
        sql(f'GRANT USAGE ON SCHEMA plaudit TO "{app}"')
        sql(f'GRANT EXECUTE ON FUNCTION plaudit.track(text, bigint, timestamptz, jsonb), '
            f'plaudit.check(jsonb), plaudit.unseen(bigint), '
            f'plaudit.mark_seen(bigint, text, text, text), '
            f'plaudit.trophy_case(bigint, text) TO "{app}"')
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'SET ROLE "{app}"')
            conn.execute("INSERT INTO comments (post_id, author_id, body, created_at) "
                         "VALUES (1, 1, 'x', '2024-03-01')")
            conn.execute("SELECT plaudit.track('comment_created', 1)")
            conn.execute("SELECT * FROM plaudit.check('[{\"type\": \"ping\", \"user_id\": 1}]')")
            conn.execute("SELECT * FROM plaudit.unseen(1)")
            conn.execute("SELECT plaudit.mark_seen(1)")
            conn.execute("SELECT * FROM plaudit.trophy_case(1, 'fr')")
        assert sql("SELECT count(*) FROM plaudit.event") == [(2,)]
    finally:
        sql(f'DROP OWNED BY "{app}"')
        sql(f'DROP ROLE "{app}"')


def test_each_rules_own_function_is_behind_the_boundary(guarded, project, sql, engine_for,
                                                        runner_role):
    # incremental runs read a rule's rows through its own function (008_boundary.sql): the
    # runner role's, SECURITY DEFINER, executable by no one else but plaudit's owner
    owned = sql("SELECT obj_description(f.oid, 'pg_proc'), f.prosecdef, "
                "pg_get_userbyid(f.proowner), has_function_privilege('public', f.oid, 'EXECUTE') "
                "FROM pg_proc AS f WHERE f.pronamespace = 'plaudit'::regnamespace "
                "AND f.proname LIKE 'rule\\_rows\\_%'")
    assert len(owned) == len(PROBES)  # the victim has no triggers
    assert {row[1:] for row in owned} == {(True, runner_role, False)}
    engine = engine_for(project)
    assert called(engine, [Event("comment_created", 1)]) == {"own": len(PROBES)}
    # one no longer in that state is never run: the rule's SQL goes through rule_rows
    sql("DO $$ BEGIN EXECUTE format('ALTER FUNCTION %s(text[], text) OWNER TO CURRENT_USER', "
        "plaudit.rule_function('copy_to_program')); END $$")
    assert called(engine, [Event("comment_created", 1)]) == {
        "own": len(PROBES) - 1, "rule_rows": 1}
