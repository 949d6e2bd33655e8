"""`plaudit preview` of a rule with triggers: the plan of its incremental SQL, and the app
tables an incremental run would read whole (a missing index on the user column)."""

from __future__ import annotations

RULE = """
    slug: liker
    name: Liker
    kind: count
    triggers: [liked]
    levels:
      - {key: bronze, name: Liker, threshold: 2, points: 5}
    query: |
      SELECT l.user_id, l.liked_at AS occurred_at
      FROM likes AS l
      WHERE {{ affected('l.user_id') }}
"""


def seed(sql, index: bool) -> None:
    sql("CREATE TABLE likes (user_id bigint NOT NULL, liked_at timestamptz NOT NULL)")
    sql(
        "INSERT INTO likes SELECT g % 2000, timestamptz '2024-01-01' + g * interval '1 minute' "
        "FROM generate_series(1, 20000) AS g"
    )
    if index:
        sql("CREATE INDEX likes_user_idx ON likes (user_id, liked_at)")
    sql("ANALYZE likes")


def incremental_part(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    return lines[lines.index("Plan (incremental, a batch of one event per trigger)") :]


def test_a_table_without_an_index_on_the_user_column_is_named(run_cli, project, sql):
    project.write("rules/liker.yaml", RULE)
    seed(sql, index=False)
    result = run_cli(project, "preview", "liker", "--plan")
    assert result.exit_code == 0, result.output
    part = incremental_part(result.stdout)
    assert any("Seq Scan on likes" in line for line in part[1:-1])
    assert part[-1] == (
        "Incremental runs read likes by sequential scan: every batch reads the whole table. "
        "An index on the column that selects a batch's users (with the time column after "
        "it) keeps them proportional to the batch."
    )


def test_an_indexed_table_is_read_by_the_index(run_cli, project, sql):
    project.write("rules/liker.yaml", RULE)
    seed(sql, index=True)
    result = run_cli(project, "preview", "liker", "--plan")
    assert result.exit_code == 0, result.output
    part = incremental_part(result.stdout)
    assert any("likes_user_idx" in line for line in part)
    assert part[-1] == "Incremental runs read no app table by sequential scan."


def test_a_rule_without_triggers_has_no_incremental_plan(run_cli, project, sql):
    project.write("rules/liker.yaml", RULE.replace("triggers: [liked]", "triggers: []"))
    seed(sql, index=False)
    result = run_cli(project, "preview", "liker", "--plan")
    assert result.exit_code == 0, result.output
    assert "Plan (incremental" not in result.stdout


def test_without_plan_preview_keeps_the_verdict_and_leaves_out_the_plans(run_cli, project, sql):
    project.write("rules/liker.yaml", RULE)
    seed(sql, index=False)
    result = run_cli(project, "preview", "liker")
    assert result.exit_code == 0, result.output
    assert "Plan (" not in result.stdout and "Seq Scan" not in result.stdout
    assert result.stdout.splitlines()[-1].startswith(
        "Incremental runs read likes by sequential scan")
