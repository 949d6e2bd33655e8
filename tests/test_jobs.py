"""Running as database jobs, on a real PostgreSQL with pg_cron: `plaudit schedule`, the job
procedures, the watchdog that enforces rule timeouts inside them, retention, the runner role
and `plaudit status`."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest

from plaudit.runtime import jobs
from sample_rules import commentator_rule

# Awards user 1 once: a rule that is always fast.
FAST_RULE = """
    slug: b_fast
    name: Fast
    kind: award
    triggers: {triggers}
    query: |
      SELECT 1::bigint AS user_id, '2024-01-01'::timestamptz AS achieved_at
      {where}
"""

# Sleeps far past its timeout.
SLOW_RULE = """
    slug: a_slow
    name: Slow
    kind: award
    triggers: {triggers}
    timeout: 1s
    query: |
      SELECT 1::bigint AS user_id, '2024-01-01'::timestamptz AS achieved_at FROM pg_sleep(60)
      {where}
"""

COUNT_RULE = commentator_rule(2)

EVENTS = """
    events:
      comment_created: {table: comments, on: insert, user: author_id, at: created_at}
"""


def rule(template: str, incremental: bool) -> str:
    if incremental:
        return template.format(triggers="[ping]", where="WHERE {{ affected('1') }}")
    return template.format(triggers="[]", where="")


def dbname(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


def seed_comments(sql, *authors_and_times):
    sql("INSERT INTO users (id, name, created_at) VALUES (1, 'a', '2020-01-01'), "
        "(7, 'b', '2020-01-01') ON CONFLICT DO NOTHING")
    sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, 1, 'article', 'hi', '2020-01-01') ON CONFLICT DO NOTHING")
    for author, at in authors_and_times:
        sql("INSERT INTO comments (post_id, author_id, body, created_at) VALUES (1, %s, 'x', %s)",
            [author, at])


# -- plaudit schedule ------------------------------------------------------------------------


def test_schedule_creates_updates_and_removes_exactly_its_jobs(project, run_cli, dsn, cron):
    db = dbname(dsn)
    prefix = f"plaudit:{db}.plaudit:"
    [(version,)] = cron.sql("SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")
    [(cron_db,)] = cron.sql("SELECT current_database()")
    # someone else's job in the same database survives everything below
    cron.sql("SELECT cron.schedule_in_database('app cleanup', '0 * * * *', 'SELECT 1', %s)",
             [db])

    def jobs_in_cron():
        return cron.sql("SELECT jobname, schedule, command, database FROM cron.job "
                        "WHERE database = %s OR jobname LIKE %s ORDER BY jobname",
                        [db, f"plaudit:{db}.%"])

    created = run_cli(project, "schedule")
    assert created.exit_code == 0, created.stderr
    assert created.stderr == (f"pg_cron {version} in database {cron_db}: 4 jobs (4 created, "
                              "0 updated, 0 unchanged), run as postgres\n")
    history = (f"DELETE FROM cron.job_run_details WHERE end_time < now() - '7 days'::interval "
               f"AND jobid IN (SELECT jobid FROM cron.job WHERE starts_with(jobname, '{prefix}'))")
    assert jobs_in_cron() == [
        ("app cleanup", "0 * * * *", "SELECT 1", db),
        (prefix + "events", "* * * * *", "CALL plaudit.job_events(1000, '60s')", db),
        (prefix + "history", "0 3 * * *", history, cron_db),
        (prefix + "nightly", "0 3 * * *", "CALL plaudit.job_nightly('30min', '30 days', '7 days')", db),
        (prefix + "watchdog", "* * * * *", "SELECT plaudit.job_watchdog()", db),
    ]
    [events_job] = [line for line in created.stdout.splitlines() if "events" in line]
    assert events_job.split() == [prefix + "events", "*", "*", "*", "*", "*", "created", db,
                                  "CALL", "plaudit.job_events(1000,", "'60s')"]
    ids = cron.sql("SELECT jobid FROM cron.job WHERE jobname LIKE %s ORDER BY jobname",
                   [prefix + "%"])

    again = run_cli(project, "schedule")
    assert again.stderr.endswith("4 jobs (0 created, 0 updated, 4 unchanged), run as postgres\n")
    assert len(jobs_in_cron()) == 5

    project.write("plaudit.yaml", "statement_timeout: 90s\nbackfill_timeout: 2h\n"
                                  "retention: {runs: 10 days}\n")
    changed = run_cli(project, "schedule", "--nightly", "30 2 * * *", "--batch-size", "500")
    assert changed.stderr.endswith("4 jobs (0 created, 3 updated, 1 unchanged), run as postgres\n")
    assert [row[:3] for row in jobs_in_cron()[1:]] == [
        (prefix + "events", "* * * * *", "CALL plaudit.job_events(500, '90s')"),
        (prefix + "history", "30 2 * * *", history),
        (prefix + "nightly", "30 2 * * *", "CALL plaudit.job_nightly('2h', '10 days', '7 days')"),
        (prefix + "watchdog", "* * * * *", "SELECT plaudit.job_watchdog()"),
    ]
    # updated in place: same ids, so pg_cron's history of the jobs stays attached
    assert cron.sql("SELECT jobid FROM cron.job WHERE jobname LIKE %s ORDER BY jobname",
                    [prefix + "%"]) == ids

    removed = run_cli(project, "schedule", "--remove")
    assert (removed.exit_code, removed.stderr) == (0, "removed 4 jobs\n")
    assert sorted(removed.stdout.split()) == sorted(prefix + j
                                                    for j in ("events", "history", "nightly",
                                                              "watchdog"))
    assert jobs_in_cron() == [("app cleanup", "0 * * * *", "SELECT 1", db)]
    assert run_cli(project, "schedule", "--remove").stderr == "removed 0 jobs\n"


def test_schedule_status_shows_jobs_and_rule_runs(project, run_cli, dsn, cron, sql):
    missing = run_cli(project, "schedule", "--status")
    assert (missing.exit_code, missing.stderr) == (
        1, f"no plaudit jobs in pg_cron for database {dbname(dsn)}, schema plaudit: "
           "`plaudit schedule` installs them\n")
    assert run_cli(project, "schedule").exit_code == 0
    prefix = f"plaudit:{dbname(dsn)}.plaudit:"
    # a failed run, as pg_cron records it
    cron.sql("INSERT INTO cron.job_run_details (jobid, runid, database, username, command, "
             "status, return_message, start_time, end_time) "
             "SELECT jobid, nextval('cron.runid_seq'), database, username, command, 'failed', "
             "'ERROR:  plaudit events job: 1 of 1 rule runs failed', now(), now() "
             "FROM cron.job WHERE jobname = %s", [prefix + "events"])
    result = run_cli(project, "schedule", "--status")
    assert result.exit_code == 1
    assert result.stderr == f"Error: the last run of {prefix}events failed\n"
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["job", "schedule", "active", "last", "run", "status", "took",
                                "failed", "24h", "message"]
    events = lines[2].split()
    assert [events[i] for i in (0, 6, 9, 11)] + events[12:16] == [
        prefix + "events", "yes", "failed", "1", "ERROR:", "plaudit", "events", "job:"]
    assert lines[3].split()[7:10] == ["never", "run", "0"]
    assert lines[-1] == "rule runs in the last day (plaudit.run): none"


def test_schedule_says_how_to_install_or_load_pg_cron(project, run_cli, monkeypatch):
    probe = {"installed": False, "version_here": None, "cron_database": None,
             "database": "shop", "username": "app", "major": 15}
    monkeypatch.setattr(jobs, "_probe", lambda engine: probe)
    result = run_cli(project, "schedule")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "Error: pg_cron is not installed on the database server. Install it (Debian/Ubuntu: "
        "apt-get install postgresql-15-cron), add to postgresql.conf:\n"
        "  shared_preload_libraries = 'pg_cron'\n"
        "  cron.database_name = 'shop'\n"
        "then restart PostgreSQL and run `plaudit schedule` again; or run plaudit from system "
        "cron instead (docs/operations.md: Running as database jobs)\n")
    probe.update(installed=True, cron_database="")
    result = run_cli(project, "schedule", "--status")
    assert (result.exit_code, result.stderr) == (2, (
        "Error: pg_cron is installed but not loaded: add to postgresql.conf:\n"
        "  shared_preload_libraries = 'pg_cron'\n"
        "  cron.database_name = 'shop'\n"
        "then restart PostgreSQL and run `plaudit schedule` again\n"))


@pytest.mark.slow
def test_pg_cron_runs_the_events_job(counting_project, run_cli, dsn, cron, sql):
    """The real thing: pg_cron starts the events job at the next minute, the job consumes the
    events and grants, and cron.job_run_details records a success."""
    project = counting_project
    seed_comments(sql, (7, "2024-05-01 10:00"), (7, "2024-05-02 10:00"))
    assert sql("SELECT count(*) FROM plaudit.event") == [(2,)]
    assert run_cli(project, "schedule").exit_code == 0  # so the job's first run has events
    job = f"plaudit:{dbname(dsn)}.plaudit:events"
    deadline = time.monotonic() + 70  # pg_cron starts jobs at the minute
    runs: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        runs = cron.sql("SELECT d.status, d.return_message FROM cron.job_run_details AS d "
                        "JOIN cron.job AS j USING (jobid) WHERE j.jobname = %s "
                        "AND d.status IN ('succeeded', 'failed')", [job])
        if runs:
            break
        time.sleep(1)
    assert runs[:1] == [("succeeded", "CALL")]
    assert sql("SELECT user_id, badge, level, achieved_at FROM plaudit.user_badge") == [
        (7, "commentator", "bronze", datetime(2024, 5, 2, 10, tzinfo=UTC))]
    assert sql("SELECT count(*) FROM plaudit.event") == [(0,)]


# -- the job procedures ------------------------------------------------------------------------


@pytest.fixture
def counting_project(project, run_cli, sql):
    project.write("plaudit.yaml", EVENTS)
    project.write("rules/commentator.yaml", COUNT_RULE)
    assert run_cli(project, "deploy").exit_code == 0
    return project


def test_a_procedure_cannot_time_limit_its_own_steps(dsn):
    """The finding behind the watchdog: statement_timeout is armed once per top-level
    statement. In a CALL, a SET after a COMMIT changes nothing, and the CALL's own timer
    fires once for the whole procedure."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE PROCEDURE steps(p_timeout text) LANGUAGE plpgsql AS $$
            BEGIN
                FOR i IN 1..3 LOOP
                    PERFORM set_config('statement_timeout', p_timeout, false);
                    COMMIT;
                    BEGIN
                        PERFORM pg_sleep(0.4);
                        RAISE NOTICE 'step % ok', i;
                    EXCEPTION WHEN query_canceled THEN
                        RAISE NOTICE 'step % cancelled', i;
                    END;
                END LOOP;
            END $$""")
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("CALL steps('100ms')")  # 100ms per step, had it applied
        assert notices == ["step 1 ok", "step 2 ok", "step 3 ok"]
        notices.clear()
        conn.execute("SET statement_timeout = '600ms'")  # armed for the CALL, once
        conn.execute("CALL steps('0')")
        assert notices == ["step 1 ok", "step 2 cancelled", "step 3 ok"]


def _wait_for_deadline(sql, slug: str, seconds: float = 10) -> int:
    """Wait until a job session publishes that it runs `slug`, then until its deadline."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rows = sql("SELECT pid, split_part(application_name, ':', 2)::bigint "
                   "FROM pg_stat_activity WHERE application_name LIKE %s", [f"plaudit:%:{slug}"])
        if rows:
            pid, deadline = rows[0]
            time.sleep(max(0.0, deadline / 1000 - time.time()) + 0.05)
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no job session ran {slug}")


def _call_in_thread(dsn: str, statement: str) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def call():
        with psycopg.connect(dsn, autocommit=True) as conn:
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    return thread, errors


def test_nightly_job_isolates_a_rule_past_its_timeout(project, run_cli, dsn, sql):
    project.write("plaudit.yaml", "allow_functions: [pg_sleep]\n")  # a slow rule, on purpose
    project.write("rules/a_slow.yaml", rule(SLOW_RULE, incremental=False))
    project.write("rules/b_fast.yaml", rule(FAST_RULE, incremental=False))
    assert run_cli(project, "deploy").exit_code == 0
    thread, errors = _call_in_thread(dsn, "CALL plaudit.job_nightly()")
    _wait_for_deadline(sql, "a_slow")
    assert sql("SELECT plaudit.job_watchdog()") == [(1,)]
    thread.join(20)
    message = "a_slow: timed out after 1s (cancelled by the watchdog)"
    [error] = errors
    assert error.diag.message_primary == (
        f"plaudit nightly job: 1 of 2 rule runs failed, marked for backfill: {message}")
    # the other rule ran after it, and its work is committed
    assert sql("SELECT badge, status, granted, message FROM plaudit.run ORDER BY run_id") == [
        ("a_slow", "failed", 0, message), ("b_fast", "ok", 1, None)]
    assert sql("SELECT slug, dirty FROM plaudit.badge ORDER BY slug") == [
        ("a_slow", True), ("b_fast", False)]
    assert sql("SELECT badge FROM plaudit.user_badge") == [("b_fast",)]


def test_events_job_isolates_a_rule_past_its_timeout(project, run_cli, dsn, sql):
    project.write("plaudit.yaml", "allow_functions: [pg_sleep]\n")  # a slow rule, on purpose
    project.write("rules/a_slow.yaml", rule(SLOW_RULE, incremental=True))
    project.write("rules/b_fast.yaml", rule(FAST_RULE, incremental=True))
    assert run_cli(project, "deploy").exit_code == 0
    sql("SELECT plaudit.track('ping', 1)")
    thread, errors = _call_in_thread(dsn, "CALL plaudit.job_events()")
    _wait_for_deadline(sql, "a_slow")
    assert sql("SELECT plaudit.job_watchdog()") == [(1,)]
    thread.join(20)
    [error] = errors
    assert "plaudit events job: 1 of 2 rule runs failed" in error.diag.message_primary
    # the batch committed: its event is consumed, the fast rule's grant made
    assert sql("SELECT count(*) FROM plaudit.event") == [(0,)]
    assert sql("SELECT badge, mode, status FROM plaudit.run ORDER BY run_id") == [
        ("a_slow", "incremental", "failed"), ("b_fast", "incremental", "ok")]
    assert sql("SELECT badge FROM plaudit.user_badge") == [("b_fast",)]
    # the nightly job repairs the dirty rule (here quickly: the sleep is gone)
    sql("UPDATE plaudit.compiled_rule SET sql = replace(sql, 'pg_sleep(60)', 'pg_sleep(0)')")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CALL plaudit.job_nightly()")
    assert sql("SELECT slug, dirty FROM plaudit.badge ORDER BY slug") == [
        ("a_slow", False), ("b_fast", False)]


def test_the_watchdog_leaves_sessions_within_their_deadline_alone(sql):
    sql("SET application_name = 'plaudit:9999999999999:someone'")
    assert sql("SELECT plaudit.job_watchdog()") == [(0,)]


def test_events_job_processes_like_plaudit_run(counting_project, dsn, sql):
    seed_comments(sql, (7, "2024-05-01 10:00"), (7, "2024-05-02 10:00"), (1, "2024-05-03"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CALL plaudit.job_events(2)")  # two batches
    assert sql("SELECT user_id, level FROM plaudit.user_badge") == [(7, "bronze")]
    assert sql("SELECT count(*), count(DISTINCT mode) FROM plaudit.run") == [(2, 1)]
    assert sql("SELECT count(*) FROM plaudit.event") == [(0,)]


def test_nightly_job_backfills_due_rules_and_prunes_old_runs(project, run_cli, dsn, sql):
    project.write("rules/b_fast.yaml", rule(FAST_RULE, incremental=False))
    project.write("rules/commentator.yaml", COUNT_RULE)
    project.write("rules/all_in.yaml", """
        slug: all_in
        name: All In
        kind: award
        triggers: [comment_created]
        query: |
          SELECT g.user_id, g.achieved_at FROM {{ badge('commentator') }} AS g
          WHERE {{ affected('g.user_id') }}
    """)
    deployed = run_cli(project, "deploy")
    assert deployed.exit_code == 0
    assert "3 rules are due for a backfill (new: b_fast, commentator, all_in)" in deployed.stderr
    # new rules are due until a complete backfill
    assert sql("SELECT slug, reason FROM plaudit.due_rules()") == [
        ("b_fast", "new"), ("commentator", "new"), ("all_in", "new")]
    assert run_cli(project, "backfill").exit_code == 0
    sql("DELETE FROM plaudit.run")
    seed_comments(sql, (7, "2024-05-01"), (7, "2024-05-02"))
    assert sql("SELECT slug, reason FROM plaudit.due_rules()") == [("b_fast", "no triggers")]
    sql("UPDATE plaudit.badge SET dirty = true WHERE slug = 'commentator'")
    assert sql("SELECT slug, reason FROM plaudit.due_rules()") == [
        ("b_fast", "no triggers"), ("commentator", "dirty"), ("all_in", "reads commentator")]
    old = "now() - interval '40 days'"
    sql(f"INSERT INTO plaudit.run (badge, mode, status, started_at, finished_at) VALUES "
        f"('b_fast', 'backfill', 'ok', {old}, {old}), ('gone', 'backfill', 'ok', {old}, {old})")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CALL plaudit.job_nightly('60s', '30 days')")
    assert sql("SELECT badge, status FROM plaudit.run WHERE started_at > now() - interval '1 day' "
               "ORDER BY run_id") == [("b_fast", "ok"), ("commentator", "ok"), ("all_in", "ok")]
    # older than 30 days: pruned, except the last run of a rule ('gone' ran once, long ago)
    assert sql("SELECT badge FROM plaudit.run WHERE started_at < now() - interval '1 day'") == [
        ("gone",)]
    assert sql("SELECT badge, user_id FROM plaudit.user_badge ORDER BY 1") == [
        ("all_in", 7), ("b_fast", 1), ("commentator", 7)]
    # the same rules, from the command line
    sql("UPDATE plaudit.badge SET dirty = true WHERE slug = 'commentator'")
    result = run_cli(project, "backfill", "--select", "state:due")
    assert [line.split()[0] for line in result.stderr.splitlines()] == [
        "b_fast", "commentator", "all_in", "leaderboard"]


def test_the_history_job_prunes_only_old_rows_of_plaudits_jobs(project, run_cli, dsn, cron):
    assert run_cli(project, "schedule").exit_code == 0
    prefix = f"plaudit:{dbname(dsn)}.plaudit:"
    cron.sql("SELECT cron.schedule_in_database('app cleanup', '0 * * * *', 'SELECT 1', %s)",
             [dbname(dsn)])
    for name in (prefix + "events", "app cleanup"):
        for age in ("10 days", "1 day"):
            cron.sql("INSERT INTO cron.job_run_details (jobid, runid, status, start_time, "
                     "end_time) SELECT jobid, nextval('cron.runid_seq'), 'succeeded', "
                     "now() - %s::interval, now() - %s::interval FROM cron.job "
                     "WHERE jobname = %s", [age, age, name])
    [(command,)] = cron.sql("SELECT command FROM cron.job WHERE jobname = %s",
                            [prefix + "history"])
    cron.sql(command)
    assert cron.sql("SELECT j.jobname, d.end_time > now() - interval '2 days' "
                    "FROM cron.job_run_details AS d JOIN cron.job AS j USING (jobid) "
                    "WHERE j.database = %s ORDER BY 1, 2", [dbname(dsn)]) == [
        ("app cleanup", False), ("app cleanup", True), (prefix + "events", True)]


# -- overlapping runs ------------------------------------------------------------------------


def test_an_overlapping_backfill_skips_the_busy_rule_and_exits_3(counting_project, run_cli,
                                                                  dsn):
    with psycopg.connect(dsn) as holder:  # a run in progress: it holds the rule's lock
        holder.execute("SELECT * FROM plaudit.run_rule('commentator')")
        result = run_cli(counting_project, "backfill")
        holder.rollback()
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0].split() == [
        "commentator", "skipped:", "commentator:", "busy:", "another", "run", "holds", "its",
        "lock", result.stderr.splitlines()[0].split()[-1]]  # the last: its seconds


# -- least privilege -------------------------------------------------------------------------


def test_rule_queries_run_as_the_runner_role_and_cannot_write_app_data(
        project, run_cli, sql, runner_role):
    project.write("rules/commentator.yaml", COUNT_RULE.replace("[comment_created]", "[]")
                  .replace("WHERE {{ affected('c.author_id') }}", ""))
    # a volatile function that writes app data, called from a rule
    sql("CREATE FUNCTION rename_everyone() RETURNS boolean LANGUAGE sql VOLATILE AS "
        "$$ UPDATE users SET name = 'pwned' RETURNING true $$")
    project.write("rules/vandal.yaml", """
        slug: vandal
        name: Vandal
        kind: award
        triggers: []
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at FROM users AS u
          WHERE rename_everyone()
    """)
    seed_comments(sql, (7, "2024-05-01"), (7, "2024-05-02"))
    result = run_cli(project, "init", "--runner-role", runner_role)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-6:] == [
        f"runner role: created role {runner_role} (NOLOGIN)",
        f"runner role: granted {runner_role} read access to plaudit's grants and progress",
        f"runner role: rule queries run as {runner_role}",
        f"runner role: {runner_role} may not read all the tables the rules read yet; as their "
        "owner, run:",
        f"  GRANT SELECT ON comments TO {runner_role};",
        f"  GRANT SELECT ON users TO {runner_role};",
    ]
    sql(f"GRANT SELECT ON comments, users TO {runner_role}")
    again = run_cli(project, "init", "--runner-role", runner_role)
    assert again.stderr.splitlines()[-2:] == [
        f"runner role: granted {runner_role} read access to plaudit's grants and progress",
        f"runner role: rule queries run as {runner_role}",
    ]

    backfill = run_cli(project, "backfill")
    assert backfill.exit_code == 1
    assert "failed: vandal: permission denied for table users (SQLSTATE 42501)" in backfill.stderr
    assert sql("SELECT count(*) FROM users WHERE name = 'pwned'") == [(0,)]
    assert sql("SELECT badge, status, message FROM plaudit.run ORDER BY badge") == [
        ("commentator", "ok", None),
        ("vandal", "failed", "vandal: permission denied for table users (SQLSTATE 42501)"),
    ]
    assert sql("SELECT badge, user_id FROM plaudit.user_badge") == [("commentator", 7)]
    # the session's own role is back after each rule, failed or not
    assert sql("SELECT current_user") == [("postgres",)]
    # and analyzed the new grants (only the owner may: not as the runner role)
    assert sql("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
               "WHERE relid = 'plaudit.user_badge'::regclass") == [(True,)]


def test_rules_read_the_batch_as_the_runner_role(counting_project, run_cli, sql, runner_role):
    assert run_cli(counting_project, "init", "--runner-role", runner_role).exit_code == 0
    sql(f"GRANT SELECT ON comments TO {runner_role}")
    seed_comments(sql, (7, "2024-05-01"), (7, "2024-05-02"))
    result = run_cli(counting_project, "run")
    assert result.exit_code == 0, result.stderr
    assert sql("SELECT user_id, badge FROM plaudit.user_badge") == [(7, "commentator")]


def test_a_superuser_is_refused_as_runner_role(project, run_cli):
    result = run_cli(project, "init", "--runner-role", "postgres")
    assert result.exit_code == 2
    assert "role postgres is a superuser or bypasses row security" in result.stderr


# -- plaudit status --------------------------------------------------------------------------


def test_status_is_0_when_all_is_well_and_1_when_something_needs_attention(
        counting_project, run_cli, sql):
    project = counting_project
    # a new rule is due until its first complete backfill
    due = run_cli(project, "status")
    assert (due.exit_code, due.stderr) == (1, (
        "attention: 1 rule is due for a backfill (new: commentator): until then incremental "
        "runs read their users' whole history; the nightly job or `plaudit backfill --select "
        "state:due` brings them up to date\n"))
    assert due.stdout.splitlines()[4].split() == ["commentator", "due", "(new)", "never"]
    assert json.loads(run_cli(project, "status", "--json").stdout)["due_rules"] == {
        "new": ["commentator"]}
    assert run_cli(project, "backfill").exit_code == 0
    fine = run_cli(project, "status")
    assert (fine.exit_code, fine.stderr) == (0, "ok: nothing needs attention\n")
    assert fine.stdout.splitlines()[0] == "pending events: 0"
    assert fine.stdout.splitlines()[4].split()[:2] == ["commentator", "ok"]
    assert fine.stdout.splitlines()[-1] == "failures in the last day: none"

    seed_comments(sql, (7, "2024-05-01"))
    assert run_cli(project, "status").exit_code == 0  # a fresh event is no lag
    sql("UPDATE plaudit.event SET tracked_at = now() - interval '10 minutes'")
    lagging = run_cli(project, "status")
    assert lagging.exit_code == 1
    assert lagging.stderr == (
        "attention: the oldest pending event has waited 10m (more than 5m): is the events job "
        "or `plaudit run` running?\n")
    assert lagging.stdout.startswith("pending events: 1, the oldest waiting for 10m\n")
    assert run_cli(project, "status", "--max-lag", "1h").exit_code == 0

    sql("DELETE FROM plaudit.event")
    sql("INSERT INTO plaudit.run (badge, mode, status, started_at, finished_at, message) "
        "VALUES ('commentator', 'incremental', 'failed', now(), now(), 'commentator: boom')")
    sql("UPDATE plaudit.badge SET dirty = true")
    failing = run_cli(project, "status", "--json")
    assert failing.exit_code == 1
    assert failing.stderr == (
        "attention: 1 dirty rule (commentator): a run failed; the nightly job or "
        "`plaudit backfill --select state:dirty` repairs them\n")
    report = json.loads(failing.stdout)
    assert report["dirty_rules"] == ["commentator"]
    assert report["pending_events"] == 0
    assert [(f["slug"], f["failures"], f["last_message"])
            for f in report["failures_last_day"]] == [("commentator", 1, "commentator: boom")]
    assert report["rules"][0]["status"] == "failed"
    assert report["attention"] == [failing.stderr.removeprefix("attention: ").strip()]


def test_status_max_lag_must_be_a_duration(project, run_cli):
    result = run_cli(project, "status", "--max-lag", "soon")
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        2, "Error: Invalid value for --max-lag: 'soon' must be a duration like 30s, 500ms, "
           "5min or 1h")


def test_retention_is_read_from_plaudit_yaml(project):
    from plaudit.errors import ConfigError
    from plaudit.model.config import load_config

    assert (load_config(project.path).retention_runs,
            load_config(project.path).retention_job_runs) == ("30 days", "7 days")
    project.write("plaudit.yaml", "retention: {runs: 90 days, job_runs: 12 hours}\n")
    config = load_config(project.path)
    assert (config.retention_runs, config.retention_job_runs) == ("90 days", "12 hours")
    project.write("plaudit.yaml", "retention:\n  runs: forever\n  events: 1 day\n")
    with pytest.raises(ConfigError) as exc:
        load_config(project.path)
    assert str(exc.value).splitlines() == [
        "plaudit.yaml:2: 'retention.runs' must be an interval like 30 days or 12 hours",
        "plaudit.yaml:3: unknown key 'events'",
    ]


def test_status_shows_a_failures_whole_message(counting_project, run_cli, sql):
    message = ("commentator: canceling statement due to statement timeout (SQLSTATE 57014); "
               "the rest of this long message matters too")
    sql("INSERT INTO plaudit.run (badge, mode, status, started_at, finished_at, message) "
        "VALUES ('commentator', 'incremental', 'failed', now(), now(), %s)", [message])
    result = run_cli(counting_project, "status")
    assert result.stdout.splitlines()[-1].endswith(message)
