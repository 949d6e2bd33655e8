"""The contract check: result columns and types from the database, without running the query."""

from __future__ import annotations

RULE = """
    slug: {slug}
    name: {slug}
    kind: {kind}
    triggers: [comment_created]
    levels:
      - {{key: bronze, name: Bronze, threshold: 3}}
    query: |
{query}
"""


def write_rule(project, slug, query, kind="count"):
    body = "\n".join("      " + line for line in query.strip("\n").splitlines())
    project.write(f"rules/{slug}.yaml", RULE.format(slug=slug, kind=kind, query=body))


def test_wrong_types_and_missing_columns_name_the_rule_and_column(run_cli, project):
    write_rule(
        project,
        "texty",
        """
        SELECT c.author_id::text AS user_id,
               c.body AS occurred_at
        FROM comments AS c
        WHERE {{ affected('c.author_id') }}
        """,
    )
    write_rule(
        project,
        "starry",
        """
        SELECT *
        FROM comments AS c
        WHERE {{ affected('c.author_id') }}
        """,
        kind="award",
    )
    write_rule(
        project,
        "typo",
        """
        SELECT c.author_id AS user_id, c.created_at AS occurred_at
        FROM comments AS c
        JOIN postz AS p ON p.id = c.post_id
        WHERE {{ affected('c.author_id') }}
        """,
    )
    result = run_cli(project, "validate", "--db")
    assert result.exit_code == 1
    # SELECT * is caught offline (render); the database finds the rest
    assert result.stdout == (
        "rules/starry.yaml:8: name the query's columns instead of SELECT *: "
        "a award rule reads user_id, achieved_at, level, scope, meta by name\n"
        "rules/texty.yaml:8: column user_id is text, but plaudit.yaml says user_id_type: bigint\n"
        "rules/texty.yaml:9: column occurred_at is text; a count query needs a timestamptz "
        "(timestamp and date also work)\n"
        "rules/typo.yaml:10: the query does not compile: "
        'relation "postz" does not exist\n'
    )
    assert result.stderr == "Error: 4 problems in rule files\n"


def test_deploy_refuses_a_broken_contract_and_deploys_nothing(run_cli, project, sql):
    write_rule(
        project,
        "dated",
        """
        SELECT c.author_id AS user_id, c.body AS created_at
        FROM comments AS c
        WHERE {{ affected('c.author_id') }}
        """,
        kind="award",
    )
    result = run_cli(project, "deploy")
    assert result.exit_code == 1
    assert result.stderr == (
        "rules/dated.yaml:8: dated: a award query must return user_id, achieved_at; "
        "missing column achieved_at\n"
        "Error: 1 problem in rule files\n"
    )
    assert sql("SELECT count(*) FROM plaudit.badge") == [(0,)]


def test_types_the_kinds_read(run_cli, project):
    write_rule(
        project,
        "levelled",
        """
        SELECT p.author_id AS user_id, p.created_at AS achieved_at, p.id AS level,
               p.title AS meta
        FROM posts AS p
        WHERE {{ affected('p.author_id') }}
        """,
        kind="award",
    )
    result = run_cli(project, "deploy")
    assert result.exit_code == 1
    assert result.stderr == (
        "rules/levelled.yaml:8: levelled: column level is bigint; "
        "an award query needs text (a level key)\n"
        "rules/levelled.yaml:9: levelled: column meta is text; an award query needs jsonb\n"
        "Error: 2 problems in rule files\n"
    )


def test_the_user_id_type_comes_from_plaudit_yaml(run_cli, project):
    project.write("plaudit.yaml", "user_id_type: uuid\n")
    write_rule(
        project,
        "numbered",
        """
        SELECT c.author_id AS user_id, c.created_at AS occurred_at
        FROM comments AS c
        WHERE {{ affected('c.author_id') }}
        """,
    )
    result = run_cli(project, "validate", "--db")
    assert result.stdout == (
        "rules/numbered.yaml:8: column user_id is bigint, but plaudit.yaml says "
        "user_id_type: uuid\n"
    )


def test_a_valid_rule_set_passes_with_the_database(run_cli, demo_project):
    result = run_cli(demo_project, "validate", "--db")
    assert result.exit_code == 0, result.output
    assert result.stderr.endswith(" rules and their contracts with the database: ok\n")
