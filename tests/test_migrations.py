"""Schema upgrades (runtime/migrate.py): a populated plaudit 0.1.0 schema upgraded by the
current `init` equals a fresh install and keeps every grant; init refuses what it must.

tests/schema_0_1_0/ is sql/schema/ as released in plaudit 0.1.0 (commit 5d3f5fe, before
tables moved to sql/migrations/): the first baseline an install may upgrade from. Keep it as
it is; when a release changes the tables, add its schema next to it and upgrade from both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from plaudit.errors import EXIT_USAGE, SchemaTooNew, UnsupportedServer
from plaudit.runtime import migrate
from plaudit.runtime.db import Database, connect, render_sql
from plaudit.runtime.deploy import deploy_rules
from plaudit.sqlfiles import migrations

BASELINE_0_1_0 = Path(__file__).parent / "schema_0_1_0"

# Everything of the plaudit schema but its data: a fresh install and an upgraded one must
# show the same. Functions with their signatures, bodies, settings, security and grants;
# columns in their order, with types, defaults and identity; constraints; indexes; triggers;
# views; sequences; table grants.
CATALOG = """
SELECT 'column', c.relname || '.' || a.attnum || ' ' || a.attname || ' '
       || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE a.attidentity WHEN '' THEN '' ELSE ' identity ' || a.attidentity::text END
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'plaudit'::regnamespace AND c.relkind IN ('r', 'p', 'v')
  AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'relation', c.relname || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '')
       || ' ' || coalesce(c.reloptions::text, '')
FROM pg_class AS c WHERE c.relnamespace = 'plaudit'::regnamespace
UNION ALL
SELECT 'constraint', c.conrelid::regclass || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
FROM pg_constraint AS c WHERE c.connamespace = 'plaudit'::regnamespace
UNION ALL
SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'plaudit'
UNION ALL
SELECT 'routine', p.prokind::text || ' ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid)
       || ') ' || coalesce(pg_get_function_result(p.oid), '') || ' ' || md5(p.prosrc) || ' '
       || p.provolatile::text || ' ' || p.prosecdef || ' ' || coalesce(p.proconfig::text, '') || ' '
       || coalesce(p.proacl::text, '') || ' ' || pg_get_userbyid(p.proowner)
FROM pg_proc AS p WHERE p.pronamespace = 'plaudit'::regnamespace
UNION ALL
SELECT 'trigger', pg_get_triggerdef(t.oid) FROM pg_trigger AS t
JOIN pg_class AS c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'plaudit'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'view', c.relname || ' ' || pg_get_viewdef(c.oid)
FROM pg_class AS c WHERE c.relnamespace = 'plaudit'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT 'sequence', s.seqrelid::regclass || ' ' || format_type(s.seqtypid, NULL) || ' '
       || s.seqstart || ' ' || s.seqincrement || ' ' || s.seqmax || ' ' || s.seqcycle::text
FROM pg_sequence AS s JOIN pg_class AS c ON c.oid = s.seqrelid
WHERE c.relnamespace = 'plaudit'::regnamespace
UNION ALL
SELECT 'type', t.typname || ' ' || t.typtype::text FROM pg_type AS t
WHERE t.typnamespace = 'plaudit'::regnamespace AND t.typrelid = 0 AND t.typelem = 0
ORDER BY 1, 2
"""

# The plaudit schema's tables, in an order their foreign keys accept.
TABLES = """
SELECT c.relname FROM pg_class AS c
WHERE c.relnamespace = 'plaudit'::regnamespace AND c.relkind = 'r'
ORDER BY (SELECT count(*) FROM pg_constraint AS k WHERE k.conrelid = c.oid AND k.contype = 'f'),
         c.relname
"""


Sql = Callable[..., list[tuple[Any, ...]]]


def catalog(sql: Sql) -> list[tuple[Any, ...]]:
    return sql(CATALOG)


def columns(sql: Sql, tables: list[str]) -> dict[str, list[str]]:
    """The columns of these tables, in order."""
    return {table: [r[0] for r in sql(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", [f"plaudit.{table}"])] for table in tables}


def rows(
    sql: Sql, tables: list[str], only: dict[str, list[str]] | None = None
) -> dict[str, list[Any]]:
    """Every row of these tables, as JSON, in a stable order; with `only`, just those
    columns of each (what an older schema had: the columns a migration adds are new)."""
    result = {}
    for table in tables:
        listed = ", ".join(f'"{c}"' for c in only[table]) if only else "*"
        result[table] = [r[0] for r in sql(
            f"SELECT to_jsonb(t) FROM (SELECT {listed} FROM plaudit.{table}) AS t "
            "ORDER BY to_jsonb(t)::text")]
    return result


def install_0_1_0(dsn: str) -> None:
    """What `plaudit init` of 0.1.0 did: its schema files, rendered, in one transaction."""
    with connect(dsn) as conn:
        db = Database(conn, "plaudit")
        with conn.transaction():
            for path in sorted(BASELINE_0_1_0.glob("[0-9][0-9][0-9]_*.sql")):
                text = render_sql(path.read_text(), "plaudit", user_id_type="bigint")
                db.script(text, f"0.1.0 {path.name}")


def move_into_0_1_0(sql: Sql, dsn: str) -> None:
    """Put the plaudit schema's data (made by the current engine) into a 0.1.0 schema.

    Filling the 0.1.0 schema by running the current engine on it would tie this test to the
    0.1.0 functions keeping the signatures the current code calls; the data is what an
    upgrade must keep, so it is made by the engine on a current schema and moved, column by
    column (the columns both have), identity sequences included."""
    sql("ALTER SCHEMA plaudit RENAME TO plaudit_filled")
    install_0_1_0(dsn)
    tables = [r[0] for r in sql(TABLES)]
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.execute("SET LOCAL session_replication_role = replica")  # FKs: any table order
        for table in tables:
            columns = [r[0] for r in conn.execute(
                "SELECT a.attname FROM pg_attribute AS a JOIN pg_attribute AS f "
                "ON f.attname = a.attname AND f.attrelid = %s::regclass "
                "AND f.attnum > 0 AND NOT f.attisdropped "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum",
                [f"plaudit_filled.{table}", f"plaudit.{table}"]).fetchall()]
            listed = ", ".join(f'"{c}"' for c in columns)
            conn.execute(
                f"INSERT INTO plaudit.{table} ({listed}) OVERRIDING SYSTEM VALUE "
                f"SELECT {listed} FROM plaudit_filled.{table} ON CONFLICT DO NOTHING")
            for (column,) in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attidentity <> ''", [f"plaudit.{table}"]).fetchall():
                conn.execute(
                    f'SELECT setval(pg_get_serial_sequence(%s, %s), '
                    f'(SELECT max("{column}") FROM plaudit.{table}))',
                    [f"plaudit.{table}", column])
        conn.commit()
    sql("DROP SCHEMA plaudit_filled CASCADE")


@pytest.fixture
def populated(demo_project, engine_for, sql):
    """The demo rules deployed and backfilled on the demo data, a manual award, a
    revocation and queued events: the data of a site in use."""
    sql("SELECT * FROM demo_generate(200, 5000)")
    engine = engine_for(demo_project)
    rules = demo_project.rules()
    deploy_rules(engine, rules)
    results = engine.backfill(rules)
    assert {r.status for r in results} == {"ok"}
    assert sql("SELECT count(*) FROM plaudit.user_badge")[0][0] > 100
    (user, badge, level, scope), = sql(
        "SELECT user_id, badge, level, scope FROM plaudit.user_badge "
        "ORDER BY user_id, badge, level, scope LIMIT 1")
    engine.revoke(badge, user, "cheated", level=level, scope=scope)
    engine.award("first_post", 999_999, "imported from the old forum")
    engine.track("comment_created", 7)
    engine.track("post_created", 8, payload={"id": 1})
    return engine, rules


def test_a_populated_0_1_0_schema_upgrades_to_a_fresh_install_and_keeps_every_row(
    populated, dsn, sql
):
    engine, rules = populated
    fresh = catalog(sql)
    move_into_0_1_0(sql, dsn)
    assert sql("SELECT to_regclass('plaudit.migration')") == [(None,)]  # 0.1.0 had none
    tables = [r[0] for r in sql(TABLES)]
    before, old_columns = rows(sql, tables), columns(sql, tables)
    assert len(before["user_badge"]) > 100 and before["suppressed_grant"] and before["event"]
    assert catalog(sql) != fresh  # 0.1.0 differs: the test compares something

    engine.init()

    # the rules' own functions are deploy's (008_boundary.sql, install_rule_function)
    assert catalog(sql) == [r for r in fresh if not r[1].startswith("f rule_rows_")]
    assert rows(sql, tables, old_columns) == before  # no grant lost, nothing else either
    assert [r[:2] for r in sql("SELECT version, name FROM plaudit.migration ORDER BY 1")] == [
        (m.version, m.name) for m in migrations()]
    # and the upgraded install works as before: the rules are deployed as they are, a new
    # backfill finds nothing to grant, new runs number after the old ones
    assert {c.status for c in deploy_rules(engine, rules).changes} == {"unchanged"}
    assert catalog(sql) == fresh  # the unchanged rules' functions made
    results = engine.backfill(rules)
    assert {r.status for r in results} == {"ok"}
    assert sum(r.granted for r in results) == 0
    assert min(r.run_id or 0 for r in results) > max(run["run_id"] for run in before["run"])
    assert rows(sql, ["user_badge", "suppressed_grant"])["user_badge"] == before["user_badge"]


def test_init_twice_applies_no_migration_and_changes_nothing(populated, dsn, sql):
    engine, _ = populated
    tables = [r[0] for r in sql(TABLES)]
    before = (catalog(sql), rows(sql, tables))
    assert before[1]["migration"]
    with engine.db.conn.transaction():
        engine.db.execute("init_lock")
        assert migrate.upgrade(engine.db, "bigint") == migrate.Upgrade(applied=[], dropped=[])
    engine.init()
    assert (catalog(sql), rows(sql, tables)) == before


def test_a_schema_newer_than_the_code_is_refused_and_left_as_it_is(
    demo_project, engine_for, run_cli, sql
):
    sql("INSERT INTO plaudit.migration (version, name) VALUES (9999, 'from_the_future')")
    before = catalog(sql)
    with pytest.raises(SchemaTooNew) as err:
        engine_for(demo_project).init()
    newest = migrations()[-1]
    assert str(err.value) == (
        "schema plaudit has migration 9999 (from_the_future), which this plaudit does not "
        f"know (it knows up to {newest.version:04d} ({newest.name})): a newer plaudit "
        "upgraded this database; upgrade plaudit to use it")
    result = run_cli(demo_project, "init")
    assert result.exit_code == EXIT_USAGE == 2
    assert "from_the_future" in result.stderr
    assert catalog(sql) == before


def test_functions_and_views_no_file_defines_are_dropped_and_the_rest_kept(
    demo_project, engine_for, sql, dsn
):
    demo_project.write("plaudit.yaml", """
        events:
          comment_created: {table: comments, on: insert, user: author_id, at: created_at}
        """)
    engine = engine_for(demo_project)
    deploy_rules(engine, demo_project.rules())  # a capture trigger on the comments table
    role = f"app_{dsn.rsplit('/', 1)[1]}"
    sql(f'CREATE ROLE "{role}"')
    try:
        sql(f'GRANT EXECUTE ON FUNCTION plaudit.track(text, bigint, timestamptz, jsonb) TO "{role}"')
        # what an older plaudit may have left: an old signature, a removed function
        sql("CREATE FUNCTION plaudit.track(p_type text) RETURNS bigint LANGUAGE sql AS 'SELECT 1'")
        sql("CREATE PROCEDURE plaudit.run_events(p_batch_size int) LANGUAGE sql AS 'SELECT 1'")
        # the site's own function and view in plaudit's schema: not plaudit's to drop
        sql("CREATE FUNCTION plaudit.my_points(bigint) RETURNS int LANGUAGE sql AS 'SELECT 1'")
        sql("CREATE VIEW plaudit.my_leaderboard AS SELECT 1 AS one")
        triggers = sql("SELECT tgrelid::regclass::text, tgname FROM pg_trigger "
                       "WHERE tgfoid = 'plaudit.capture_event()'::regprocedure ORDER BY 1")
        assert triggers

        changed = engine.init()
        assert changed.dropped == [  # said, so that nothing disappears unannounced
            "procedure plaudit.run_events(integer)", "function plaudit.track(text)"]

        assert sql("SELECT p.oid::regprocedure::text FROM pg_proc AS p "
                   "WHERE p.proname IN ('track', 'run_events', 'my_points') "
                   "AND p.pronamespace = 'plaudit'::regnamespace ORDER BY 1") == [
            ("plaudit.my_points(bigint)",),
            ("plaudit.track(text,bigint,timestamp with time zone,jsonb)",)]
        assert sql("SELECT to_regclass('plaudit.my_leaderboard')::text") == [
            ("plaudit.my_leaderboard",)]
        assert sql("SELECT count(*) FROM pg_proc WHERE pronamespace = 'plaudit'::regnamespace "
                   "AND array_to_string(proconfig, ' ') LIKE '%stale%'") == [(0,)]
        # kept: an app role's grant, the capture triggers on the app tables (which work)
        assert sql("SELECT has_function_privilege(%s, "
                   "'plaudit.track(text, bigint, timestamptz, jsonb)', 'EXECUTE')",
                   [role]) == [(True,)]
        assert sql("SELECT tgrelid::regclass::text, tgname FROM pg_trigger "
                   "WHERE tgfoid = 'plaudit.capture_event()'::regprocedure ORDER BY 1") == triggers
        sql("SELECT * FROM demo_generate(20, 100)")
        sql("DELETE FROM plaudit.event")
        sql("INSERT INTO comments (author_id, post_id, body, created_at) "
            "SELECT 7, min(id), 'after init', now() FROM posts")
        assert sql("SELECT type, user_id FROM plaudit.event") == [("comment_created", 7)]
    finally:
        sql(f'DROP OWNED BY "{role}"')
        sql(f'DROP ROLE "{role}"')


def test_a_function_still_used_keeps_init_from_dropping_it(demo_project, engine_for, sql):
    """No CASCADE: init stops (and changes nothing) rather than drop an app's view with it."""
    sql("CREATE FUNCTION plaudit.process_events() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    sql("CREATE VIEW public.app_view AS SELECT plaudit.process_events() AS x")
    with pytest.raises(Exception, match="cannot drop function plaudit.process_events()"):
        engine_for(demo_project).init()
    assert sql("SELECT * FROM public.app_view") == [(1,)]


def test_the_scheduled_jobs_still_run_after_init(project, run_cli, engine_for, sql, cron):
    assert run_cli(project, "schedule").exit_code == 0
    engine_for(project).init()
    commands = [r[0] for r in cron.sql(
        "SELECT command FROM cron.job WHERE database = %s AND command LIKE %s ORDER BY jobname",
        [sql("SELECT current_database()")[0][0], "%plaudit.%"])]
    assert len(commands) >= 3
    for command in commands:
        sql(command)  # each resolves to a function or procedure init left in place


def test_the_server_version_check_init_runs(demo_project, engine_for, monkeypatch):
    migrate.check_server_version(140000)
    migrate.check_server_version(170002)
    with pytest.raises(UnsupportedServer) as err:
        migrate.check_server_version(130012)
    assert str(err.value) == (
        "PostgreSQL 13 is too old for plaudit: it needs PostgreSQL 14 or newer "
        "(server_version_num 130012)")
    assert err.value.exit_code == 2
    with pytest.raises(UnsupportedServer, match="PostgreSQL 9.6 is too old"):
        migrate.check_server_version(90624)
    # init checks the server it is connected to: with a minimum above it, it refuses
    monkeypatch.setattr(migrate, "MIN_POSTGRES_MAJOR", 99)
    with pytest.raises(UnsupportedServer, match=r"it needs PostgreSQL 99 or newer"):
        engine_for(demo_project).init()
