"""Operating plaudit never destroys or leaks (issue 13): nothing destructive before every
check has passed, secrets never printed, no accidental clusters, plain errors."""

from __future__ import annotations

import pytest

from plaudit.local.cluster import LIBPQ_VARIABLES, Cluster

AWARD = """
    slug: founder
    name: Founder
    kind: award
    query: |
      SELECT u.id AS user_id, u.created_at AS achieved_at FROM users AS u WHERE u.id = 1
"""


def _site_with_a_grant(run_cli, project, sql) -> None:
    """A real site: plaudit installed, one grant by hand."""
    project.write("rules/founder.yaml", AWARD)
    sql("INSERT INTO users (id, name, created_at) VALUES (7, 'seven', '2024-01-01')")
    assert run_cli(project, "init").exit_code == 0
    awarded = run_cli(project, "award", "founder", "7", "--reason", "was there first")
    assert awarded.exit_code == 0, awarded.output


@pytest.mark.parametrize("site", ["its own users table", "no users table"])
def test_demo_refuses_a_database_that_is_not_the_demos_before_touching_it(
        run_cli, project, sql, site):
    _site_with_a_grant(run_cli, project, sql)
    if site == "its own users table":
        sql("COMMENT ON TABLE users IS 'the site''s users'")
    else:
        sql("ALTER TABLE users RENAME TO members")
    result = run_cli(project, "demo", "--users", "10", "--activities", "100")
    assert result.exit_code == 2
    assert "Error: " in result.stderr and "demo" in result.stderr
    # nothing was dropped: the site's grant is where it was
    assert sql("SELECT user_id, badge FROM plaudit.user_badge") == [(7, "founder")]


@pytest.mark.parametrize("dsn", [
    "postgresql://postgres:s3cret@127.0.0.1:1/nowhere",
    "host=127.0.0.1 port=1 user=postgres password=s3cret dbname=nowhere",
])
def test_a_password_is_never_printed(run_cli, project, dsn):
    result = run_cli(project, "status", dsn_=dsn)
    assert result.exit_code == 2
    assert "s3cret" not in result.output
    assert result.stderr.startswith("Error: cannot connect to ")
    assert "***" in result.stderr


@pytest.mark.parametrize("dsn", ["not a dsn", "postgresql://[::1"])
def test_a_malformed_connection_string_is_a_plain_error(run_cli, project, dsn):
    result = run_cli(project, "status", dsn_=dsn)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: the connection string is not valid: ")
    assert "Traceback" not in result.output


def no_database_named(monkeypatch) -> None:
    """No --dsn, no PLAUDIT_DSN, no PG* variable: only the embedded cluster is left."""
    for name in ("PLAUDIT_DSN", *LIBPQ_VARIABLES):
        monkeypatch.delenv(name, raising=False)


NOT_A_PROJECT = "is not a plaudit project (no plaudit.yaml)"
NO_RULES = "the rules folder rules/ does not exist"


@pytest.mark.parametrize("args, says", [
    (["status"], NOT_A_PROJECT), (["db", "start"], NOT_A_PROJECT), (["run"], NOT_A_PROJECT),
    (["init"], NO_RULES), (["validate", "--db"], NO_RULES),
])
def test_no_cluster_is_created_in_a_folder_that_is_not_a_project(
        tmp_path, monkeypatch, args, says):
    """Run in the wrong folder, plaudit says so instead of creating (and starting) an
    embedded cluster there: that needs plaudit.yaml in the folder, or --project."""
    from click.testing import CliRunner

    from plaudit.cli import cli

    no_database_named(monkeypatch)
    monkeypatch.chdir(tmp_path)
    try:
        result = CliRunner().invoke(cli, args)
    finally:  # should the check ever fail, the cluster it made does not outlive the test
        if (tmp_path / ".plaudit").exists():
            Cluster(tmp_path / ".plaudit").stop()
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ") and says in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_only_init_demo_and_db_start_create_a_projects_cluster(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from plaudit.cli import cli

    no_database_named(monkeypatch)
    (tmp_path / "plaudit.yaml").write_text("")
    (tmp_path / "rules").mkdir()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"Error: no embedded cluster in {tmp_path / '.plaudit'} yet: `plaudit init` creates "
        "it (or name a database with --dsn)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plaudit.yaml", "rules"]


@pytest.mark.parametrize("args", [["award", "founder", "7", "--reason", "first"], ["status"],
                                  ["user", "7"], ["run"]])
def test_a_database_without_plaudit_says_to_run_init(run_cli, project, sql, args):
    sql("DROP SCHEMA IF EXISTS plaudit CASCADE")
    result = run_cli(project, *args)
    assert result.exit_code == 2
    [dbname] = sql("SELECT current_database()")[0]
    assert result.stderr.startswith(
        f"Error: database {dbname} has no plaudit schema (plaudit), or one older than this "
        "plaudit: run `plaudit init` (")
    # no internal name of plaudit's queries
    assert not any(name in result.stderr for name in (
        "award_badge", "status_events", "user_grants", "take_events", "meta_exists"))


def test_internal_query_names_are_shown_only_with_verbose(run_cli, project, sql):
    project.write("rules/founder.yaml", AWARD)
    assert run_cli(project, "init").exit_code == 0
    plain = run_cli(project, "user", "abc")
    assert (plain.exit_code, plain.stderr) == (
        2, 'Error: invalid input syntax for type bigint: "abc"\n')
    verbose = run_cli(project, "-v", "user", "abc")
    assert "  in plaudit's query trophy_case\n" in verbose.stderr


REVIEWER = """
    slug: reviewer
    name: Reviewer
    kind: count
    levels:
      - {key: bronze, name: Reviewer, threshold: 1}
    query: |
      SELECT r.author_id AS user_id, r.created_at AS occurred_at
      FROM reviews AS r
"""


def test_the_runner_roles_missing_grants_are_found_before_a_backfill(
        run_cli, project, sql, runner_role):
    """After `init --runner-role`, a rule on a new table: validate --db, preview and deploy
    name the GRANT it needs (at the rule's query line) instead of a backfill failing on
    `permission denied` and the rule turning dirty."""
    project.write("rules/founder.yaml", AWARD)
    assert run_cli(project, "init", "--runner-role", runner_role).exit_code == 0
    sql(f"GRANT SELECT ON users TO {runner_role}")
    sql("CREATE TABLE reviews (author_id bigint, created_at timestamptz)")
    project.write("rules/reviewer.yaml", REVIEWER)
    problem = (f"rules/reviewer.yaml:7: the runner role {runner_role} may not read what the "
               f"query reads; as the tables' owner, run: GRANT SELECT ON reviews TO "
               f"{runner_role};\n")
    for args in (["deploy"], ["validate", "--db"], ["preview", "reviewer"]):
        result = run_cli(project, *args)
        assert result.exit_code == 1, (args, result.output)
        assert problem in result.stdout + result.stderr, (args, result.output)
    assert sql("SELECT slug FROM plaudit.badge ORDER BY 1") == [("founder",)]
    sql(f"GRANT SELECT ON reviews TO {runner_role}")
    assert run_cli(project, "deploy").exit_code == 0
    assert run_cli(project, "backfill", "--select", "reviewer").exit_code == 0


def test_a_busy_rule_says_skipped_once(demo_project, engine_for, dsn, sql):
    import psycopg

    from plaudit.runtime.deploy import deploy_rules

    engine = engine_for(demo_project)
    rules = [r for r in demo_project.rules() if r.slug == "commentator"]
    deploy_rules(engine, rules)
    holder = psycopg.connect(dsn)
    holder.execute("SELECT pg_advisory_xact_lock(hashtext('plaudit'), hashtext('commentator'))")
    try:
        [result] = engine.backfill(rules)
    finally:
        holder.rollback()
        holder.close()
    assert (result.status, result.message) == (
        "skipped", "commentator: busy: another run holds its lock")


def test_a_preview_whose_query_fails_names_the_rule_file_and_line(run_cli, project):
    project.write("rules/broken.yaml", """
        slug: broken
        name: Broken
        kind: award
        query: |
          SELECT 1::bigint AS user_id, now() AS achieved_at WHERE 1 / 0 = 1
    """)
    assert run_cli(project, "deploy").exit_code == 0
    result = run_cli(project, "preview", "broken")
    assert result.exit_code == 1
    assert result.stderr == (
        "rules/broken.yaml:5: division by zero\nError: 1 problem in rule files\n")


def test_init_says_what_of_plaudits_own_it_dropped(run_cli, project, sql):
    project.write("rules/founder.yaml", AWARD)
    sql("CREATE FUNCTION plaudit.process_events(p_limit int) RETURNS int LANGUAGE sql "
        "AS 'SELECT 1'")  # left by plaudit 0.1.0
    result = run_cli(project, "init")
    assert result.exit_code == 0, result.output
    assert ("dropped function plaudit.process_events(integer) (this version no longer has "
            "it)\n") in result.stderr


def test_validate_warns_of_a_trigger_no_events_mapping_produces(run_cli, project):
    project.write("plaudit.yaml", "events:\n"
                  "  comment_created: {table: comments, on: insert, user: author_id}\n")
    project.write("rules/talker.yaml", """
        slug: talker
        name: Talker
        kind: count
        triggers: [comment_created, coment_edited]
        levels:
          - {key: bronze, name: Chatty, threshold: 2}
        query: |
          SELECT c.author_id AS user_id, c.created_at AS occurred_at FROM comments AS c
          WHERE {{ affected('c.author_id') }}
    """)
    result = run_cli(project, "validate")
    assert result.exit_code == 0  # a warning, not a failure: the app may track it itself
    assert result.stderr == (
        "rules/talker.yaml:4: warning: trigger 'coment_edited' is produced by no events: "
        "mapping in plaudit.yaml (fine if the app enqueues it with plaudit.track)\n"
        "1 rule: ok\n")


def test_validate_and_lint_take_rule_files_as_paths(run_cli, project):
    project.write("rules/founder.yaml", AWARD)
    project.write("rules/bad.yaml", "slug: bad\nname: Bad\nkind: tally\nquery: SELECT 1\n")
    whole = run_cli(project, "validate")
    assert whole.exit_code == 1 and "rules/bad.yaml:3: unknown kind 'tally'" in whole.stdout
    one = run_cli(project, "validate", str(project.path / "rules" / "founder.yaml"))
    assert (one.exit_code, one.stdout, one.stderr) == (0, "", "1 rule: ok\n")
    linted = run_cli(project, "lint", str(project.path / "rules" / "founder.yaml"))
    assert linted.stdout  # the founder's style violations, and only the founder's
    assert all(line.startswith("rules/founder.yaml:") for line in linted.stdout.splitlines())
    project.write("plaudit.yaml", "")
    outside = run_cli(project, "validate", str(project.path / "plaudit.yaml"))
    assert outside.exit_code == 2 and "is not a rule file of" in outside.stderr
