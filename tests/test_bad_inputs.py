"""A catalog of bad input (issue 13): for each, the exit code, a plain `Error:` line (or
`file:line:` problems), no traceback, no internal name of plaudit's, and nothing written."""

from __future__ import annotations

import pytest

FOUNDER = """
    slug: founder
    name: Founder
    kind: award
    triggers: [user_joined]
    levels:
      - {key: gold, name: Gold}
      - {key: silver, name: Silver}
    query: |
      SELECT u.id AS user_id, u.created_at AS achieved_at, 'gold' AS level
      FROM users AS u WHERE u.id = 1
"""
RULE_HEAD = "slug: {slug}\nname: X\nkind: {kind}\n"

# (id, files to write (path: text), arguments, exit code, what stderr says)
CATALOG = [
    ("malformed-dsn", {}, ["--dsn", "not a dsn", "status"], 2,
     "Error: the connection string is not valid"),
    ("server-down", {}, ["--dsn", "postgresql://postgres@127.0.0.1:1/x", "status"], 2,
     "Error: cannot connect to postgresql://postgres@127.0.0.1:1/x"),
    ("password-masked", {}, ["--dsn", "postgresql://u:s3cret@127.0.0.1:1/x", "status"], 2,
     "Error: cannot connect to postgresql://u:***@127.0.0.1:1/x"),
    ("user-id-of-wrong-type", {}, ["user", "abc"], 2,
     'Error: invalid input syntax for type bigint: "abc"'),
    ("unknown-badge", {}, ["award", "nope", "7", "--reason", "r"], 2,
     "Error: no deployed badge 'nope'"),
    ("unknown-level", {}, ["award", "founder", "7", "--level", "bronze", "--reason", "r"], 2,
     "Error: badge 'founder' has no level 'bronze'"),
    ("level-needed", {}, ["award", "founder", "7", "--reason", "r"], 2,
     "Error: badge 'founder' has several levels"),
    ("blank-reason", {}, ["award", "founder", "7", "--level", "gold", "--reason", " "], 2,
     "Error: a manual grant needs a reason"),
    ("missing-reason", {}, ["award", "founder", "7", "--level", "gold"], 2,
     "Error: Missing option '--reason'"),
    ("revoke-nothing", {}, ["revoke", "founder", "7", "--reason", "r"], 1, ""),
    ("unknown-rule", {}, ["render", "nope"], 2, "Error: no rule 'nope' in "),
    ("malformed-param", {}, ["render", "founder", "--param", "x"], 2,
     "Error: Invalid value for --param: 'x' is not of the form name=value"),
    ("unknown-param", {}, ["backfill", "--param", "nope=1"], 2,
     "Error: no selected rule declares param nope"),
    ("bad-at", {}, ["track", "user_joined", "7", "--at", "yesterday"], 2,
     "Error: Invalid value for --at: 'yesterday' is not an ISO 8601 timestamp"),
    ("payload-not-an-object", {}, ["track", "user_joined", "7", "--payload", "[1]"], 2,
     "Error: Invalid value for --payload: must be a JSON object"),
    ("unknown-event-type", {}, ["track", "user_joind", "7"], 2,
     "Error: Invalid value for TYPE: no rule's triggers"),
    ("event-type-characters", {}, ["track", "User Joined", "7"], 2,
     "Error: Invalid value for TYPE: 'User Joined' must match [a-z0-9_]+"),
    ("select-typo", {}, ["backfill", "--select", "foundr"], 2,
     "Error: --select 'foundr' matches no rule"),
    ("unknown-state", {}, ["backfill", "--select", "state:broken"], 2,
     "Error: --select 'state:broken': unknown state"),
    ("empty-selector-part", {}, ["backfill", "--select", "founder,"], 2,
     "Error: --select 'founder,': an empty selector"),
    ("batch-size-zero", {}, ["run", "--batch-size", "0"], 2, "Error: Invalid value for"),
    ("max-lag-not-a-duration", {}, ["status", "--max-lag", "soon"], 2, "Error: "),
    ("unknown-command", {}, ["frobnicate"], 2, "Error: No such command 'frobnicate'"),
    ("runner-role-name", {}, ["init", "--runner-role", "Bad Name"], 2,
     "Error: Invalid value for --runner-role"),
    ("plaudit-yaml-syntax", {"plaudit.yaml": "rules: [\n"}, ["status"], 2,
     "plaudit.yaml:"),
    ("plaudit-yaml-unknown-key", {"plaudit.yaml": "colour: red\n"}, ["status"], 2,
     "Error: plaudit.yaml:1: unknown key 'colour'"),
    ("plaudit-yaml-timezone", {"plaudit.yaml": "timezone: Mars/Olympus\n"}, ["status"], 2,
     "Error: plaudit.yaml:1: "),
    ("plaudit-yaml-user-id-type", {"plaudit.yaml": "user_id_type: float\n"}, ["status"], 2,
     "Error: plaudit.yaml:1: 'user_id_type' must be one of"),
    ("rules-folder-typo", {"plaudit.yaml": "rules: ruels\n"}, ["deploy"], 2,
     "Error: the rules folder ruels/ does not exist"),
    ("rule-yaml-syntax", {"rules/bad.yaml": "slug: bad\nname: [\n"}, ["deploy"], 1,
     "rules/bad.yaml:"),
    ("rule-unknown-kind", {"rules/bad.yaml": RULE_HEAD.format(slug="bad", kind="tally")
                           + "query: SELECT 1\n"}, ["deploy"], 1,
     "rules/bad.yaml:3: unknown kind 'tally'"),
    ("rule-select-star", {"rules/bad.yaml": RULE_HEAD.format(slug="bad", kind="award")
                          + "query: SELECT * FROM users\n"}, ["deploy"], 1, "rules/bad.yaml:4:"),
    ("rule-denied-function", {"rules/bad.yaml": RULE_HEAD.format(slug="bad", kind="award")
                              + "query: SELECT 1::bigint AS user_id, now() AS achieved_at "
                                "FROM pg_sleep(1)\n"}, ["deploy"], 1, "rules/bad.yaml:4:"),
    ("rule-slug-mismatch", {"rules/bad.yaml": RULE_HEAD.format(slug="other", kind="award")
                            + "query: SELECT 1\n"}, ["deploy"], 1,
     "rules/bad.yaml:1: slug 'other' does not match file name 'bad.yaml'"),
    ("rule-missing-table", {"rules/bad.yaml": RULE_HEAD.format(slug="bad", kind="award")
                            + "query: SELECT n.id AS user_id, now() AS achieved_at "
                              "FROM nowhere AS n\n"}, ["deploy"], 1,
     'rules/bad.yaml:4: bad: the query does not compile: relation "nowhere" does not exist'),
]
INTERNAL_NAMES = ("award_badge", "revoke_badge", "user_grants", "status_events", "track:",
                  "take_events", "preview_rule", "deploy_badge", "configure:")


def _written(sql):
    return sql("SELECT (SELECT count(*) FROM plaudit.badge), (SELECT count(*) FROM "
               "plaudit.user_badge), (SELECT count(*) FROM plaudit.event), "
               "(SELECT count(*) FROM plaudit.run), (SELECT count(*) FROM plaudit.grant_log)")


@pytest.mark.parametrize("files, args, code, says",
                         [pytest.param(*c[1:], id=c[0]) for c in CATALOG])
def test_bad_input(run_cli, project, sql, files, args, code, says):
    project.write("rules/founder.yaml", FOUNDER)
    sql("INSERT INTO users (id, name, created_at) VALUES (1, 'one', '2024-01-01')")
    assert run_cli(project, "init").exit_code == 0
    for path, text in files.items():
        project.write(path, text)
    before = _written(sql)
    if args[0] == "--dsn":
        result = run_cli(project, *args[2:], dsn_=args[1])
    else:
        result = run_cli(project, *args)
    assert result.exit_code == code, result.output
    assert says in result.stderr + result.stdout, result.output
    assert "Traceback" not in result.output
    assert not any(name in result.stderr for name in INTERNAL_NAMES), result.stderr
    assert _written(sql) == before


def test_the_catalog_is_at_least_thirty_inputs():
    assert len(CATALOG) >= 30
