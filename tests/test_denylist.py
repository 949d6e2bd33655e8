"""The deny list: calls a rule's SELECT may not make, refused at validate time at file:line.

`plaudit validate` is offline (the DSN below is never used): the check is on the rendered
text, before anything runs. The runtime boundary (the runner role) is tested elsewhere.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from plaudit.cli import cli
from plaudit.errors import ConfigError, RenderError
from plaudit.model.config import load_config
from plaudit.model.denylist import forbidden_calls, plaudit_functions
from plaudit.sqlgen.render import render

OFFLINE = "postgresql://nobody@127.0.0.1:1/none"
SEE = "(see docs on the rule boundary)"


def validate(project):
    return CliRunner().invoke(cli, ["--dsn", OFFLINE, "--project", str(project.path), "validate"])


def award(project, slug: str, select_list: str, where: str = "TRUE") -> None:
    project.write(
        f"rules/{slug}.yaml",
        f"""
        slug: {slug}
        name: Probe
        kind: award
        query: |
          SELECT p.author_id AS user_id,
                 p.created_at AS achieved_at,
                 {select_list} AS meta
          FROM posts AS p
          WHERE {where}
        """,
    )


@pytest.mark.parametrize(
    ("call", "shown", "reason"),
    [
        ("set_config('role', 'none', true)", "set_config", "it changes the session or server"),
        ("pg_catalog.pg_advisory_lock(1)", "pg_advisory_lock", "it changes the session or server"),
        ("pg_try_advisory_xact_lock(1)", "pg_try_advisory_xact_lock",
         "it changes the session or server"),
        ("plaudit.take_events(1000)", "plaudit.take_events",
         "it is one of plaudit's own functions, which no rule may call"),
        ("take_events(1000)", "take_events",
         "it is one of plaudit's own functions, which no rule may call "
         "(if it is the app's own, qualify it with its schema)"),
        ("pg_read_file('/etc/passwd')", "pg_read_file", "it reads the server's files"),
        ("public.dblink_exec('x', 'y')", "dblink_exec", "it connects to other servers"),
        ("query_to_xml('DELETE FROM users', true, true, '')", "query_to_xml",
         "it runs SQL of its own"),
        ("nextval('s')", "nextval", "it changes the session or server"),
        ("pg_sleep(100)", "pg_sleep", "it changes the session or server"),
        ("pg_terminate_backend(1)", "pg_terminate_backend", "it changes the session or server"),
    ],
)
def test_a_forbidden_call_is_refused_at_its_line(project, call, shown, reason):
    award(project, "probe", f"to_jsonb({call})")
    result = validate(project)
    assert result.exit_code == 1
    assert result.stdout == (
        f"rules/probe.yaml:7: function {shown}() is not allowed in a rule query: {reason} {SEE}\n"
    )
    assert result.stderr == "Error: 1 problem in rule files\n"


def test_every_forbidden_call_of_a_rule_is_reported_at_its_own_line(project):
    project.write(
        "rules/probe.yaml",
        """
        slug: probe
        name: Probe
        kind: award
        triggers: [post_created]
        query: |
          SELECT p.author_id AS user_id, p.created_at AS achieved_at
          FROM posts AS p
          WHERE {{ affected('p.author_id') }}
          {% if is_incremental() %}
            AND pg_notify('x', 'y') IS NULL
          {% endif %}
            AND set_config('role', 'none', true) IS NOT NULL
            AND EXISTS (SELECT FROM plaudit.award_badge(1, 'x', 'y'))
        """,
    )
    result = validate(project)
    assert result.exit_code == 1
    assert result.stdout == (
        "rules/probe.yaml:10: function pg_notify() is not allowed in a rule query: "
        f"it changes the session or server {SEE} (incremental mode)\n"
        "rules/probe.yaml:12: function set_config() is not allowed in a rule query: "
        f"it changes the session or server {SEE}\n"
        "rules/probe.yaml:13: function plaudit.award_badge() is not allowed in a rule query: "
        f"it is one of plaudit's own functions, which no rule may call {SEE}\n"
    )


def test_the_configured_schema_is_plaudits(project):
    project.write("plaudit.yaml", "schema: badges\n")
    award(project, "probe", "to_jsonb(badges.mark_seen(1))")
    result = validate(project)
    assert result.exit_code == 1
    assert "function badges.mark_seen() is not allowed" in result.stdout


def test_harmless_functions_and_other_schemas_pass(project):
    award(
        project,
        "probe",
        "jsonb_build_object('n', lower(p.title), 'x', txid_current(), 'l', length(p.title))",
        where="p.created_at < now() AND app_schema.track(p.id) AND public.check(1)",
    )
    result = validate(project)
    assert result.stderr == "1 rule: ok\n", result.stdout
    assert result.exit_code == 0


def test_allow_functions_lets_a_reviewed_function_through(project):
    project.write("plaudit.yaml", "allow_functions: [pg_sleep, nextval]\n")
    award(project, "probe", "to_jsonb(pg_sleep(0))", where="nextval('s') > 0")
    result = validate(project)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "1 rule: ok\n")


def test_allow_functions_is_exact_names_not_families(project):
    project.write("plaudit.yaml", "allow_functions: [pg_sleep]\n")
    award(project, "probe", "to_jsonb(pg_sleep_for('1 second'))")
    result = validate(project)
    assert result.exit_code == 1
    assert "function pg_sleep_for() is not allowed" in result.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allow_functions: pg_sleep\n",
         "plaudit.yaml:1: 'allow_functions' must be a list of function names"),
        ("allow_functions: [take_events]\n",
         "plaudit.yaml:1: allow_functions: 'take_events' is one of plaudit's own functions, "
         "which can never be allowed"),
        ("allow_functions: [plaudit.take_events]\n",
         "plaudit.yaml:1: allow_functions: 'plaudit.take_events' is one of plaudit's own "
         "functions, which can never be allowed"),
        ("allow_functions: [upper]\n",
         "plaudit.yaml:1: allow_functions: 'upper' is not on the deny list (nothing to allow)"),
        ("allow_functions:\n  - pg_sleep\n  - 7\n",
         "plaudit.yaml:3: allow_functions: 7 is not a function name like pg_sleep"),
        ("allow_functions: [pg_catalog.set_config]\n",
         "plaudit.yaml:1: allow_functions: 'pg_catalog.set_config' is not a function name "
         "like pg_sleep"),
    ],
)
def test_allow_functions_is_validated(tmp_path, text, message):
    (tmp_path / "plaudit.yaml").write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)
    assert str(error.value) == message


def test_render_refuses_too_so_deploy_test_and_preview_do(project):
    award(project, "probe", "to_jsonb(set_config('role', 'none', true))")
    (rule,) = project.rules()
    with pytest.raises(RenderError) as error:
        render(rule, "backfill", load_config(project.path))
    assert str(error.value) == (
        "rules/probe.yaml:7: probe: function set_config() is not allowed in a rule query: "
        f"it changes the session or server {SEE}"
    )


def test_offsets_are_characters_not_bytes():
    query = "SELECT 'ééé' AS a, set_config('x', 'y', true) AS b"
    ((offset, _),) = forbidden_calls(query)
    assert query[offset:].startswith("set_config")


def test_plaudits_functions_are_read_from_its_schema_files():
    assert {"take_events", "award_badge", "test_table", "run_rule"} <= plaudit_functions()
