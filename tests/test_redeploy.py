"""Safe redeploys: changes said in words, grants never deleted without --force, dry runs."""

from __future__ import annotations

import pytest

TALKER = """
    slug: talker
    name: Talker
    kind: count
    triggers: [comment_created]
    enabled: true
    levels:
      - {key: bronze, name: Chatty, threshold: 2, points: 5}
      - {key: silver, name: Talkative, threshold: 3, points: 10}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at
      FROM comments AS c
      WHERE {{ affected('c.author_id') }}
"""

POSTER = """
    slug: poster
    name: Poster
    kind: award
    query: |
      SELECT p.author_id AS user_id, min(p.created_at) AS achieved_at
      FROM posts AS p
      GROUP BY p.author_id
"""


@pytest.fixture
def talking(project, run_cli, sql):
    """Talker and Poster deployed and backfilled: user 1 holds bronze and silver."""
    project.write("rules/talker.yaml", TALKER)
    project.write("rules/poster.yaml", POSTER)
    sql("INSERT INTO users (id, name, created_at) VALUES (1, 'a', '2024-01-01')")
    sql(
        "INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, 1, 'article', 't', '2024-01-01')"
    )
    for day in (1, 2, 3):
        sql(
            "INSERT INTO comments (post_id, author_id, body, created_at) "
            f"VALUES (1, 1, 'x', '2024-02-0{day} 10:00+00')"
        )
    assert run_cli(project, "deploy").exit_code == 0
    assert run_cli(project, "backfill").exit_code == 0
    return project


def edit(project, slug, old, new):
    path = project.path / "rules" / f"{slug}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def grants(sql):
    return sql("SELECT badge, level FROM plaudit.user_badge ORDER BY 1, 2")


def test_an_unchanged_rule_set_deploys_nothing_new(talking, run_cli):
    result = run_cli(talking, "deploy")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "", "deployed 2 rules (0 created, 0 changed)\n")
    # -v names what stayed as it was, too
    verbose = run_cli(talking, "-v", "deploy")
    assert (verbose.exit_code, verbose.stdout) == (0, "poster: unchanged\ntalker: unchanged\n")


def test_a_changed_threshold_is_reported_and_existing_grants_stand(talking, run_cli, sql):
    edit(talking, "talker", "threshold: 2,", "threshold: 1,")
    result = run_cli(talking, "deploy")
    assert result.exit_code == 0
    assert result.stdout == "talker: changed\n"
    assert result.stderr == (
        "Talker: bronze threshold 2 → 1; existing grants stand; "
        "run `plaudit backfill --select talker` to award new ones\n"
        "deployed 2 rules (0 created, 1 changed)\n"
        "note: 1 rule is due for a backfill (changed: talker): until then incremental runs read "
        "their users' whole history; the nightly job or `plaudit backfill --select state:due` "
        "brings them up to date\n"
    )
    assert grants(sql) == [("poster", "default"), ("talker", "bronze"), ("talker", "silver")]
    assert sql("SELECT slug, due FROM plaudit.badge ORDER BY 1") == [
        ("poster", None), ("talker", "changed")]


def test_a_changed_query_and_cosmetic_changes(talking, run_cli):
    edit(talking, "talker", "WHERE {{", "WHERE c.body <> '' AND {{")
    edit(talking, "talker", "name: Talkative, threshold: 3, points: 10", "name: Chatterbox, threshold: 3, points: 15")
    edit(talking, "poster", "name: Poster", "name: Writer")
    result = run_cli(talking, "deploy")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "Writer: name Poster → Writer",
        "Talker: query changed; silver name Talkative → Chatterbox; silver points 10 → 15; "
        "existing grants stand; run `plaudit backfill --select talker` to award new ones",
        "deployed 2 rules (0 created, 2 changed)",
        "note: 1 rule is due for a backfill (changed: talker): until then incremental runs read "
        "their users' whole history; the nightly job or `plaudit backfill --select state:due` "
        "brings them up to date",
    ]


def test_removing_a_level_with_grants_is_refused_without_force(talking, run_cli, sql):
    edit(talking, "talker", "  - {key: silver, name: Talkative, threshold: 3, points: 10}\n", "")
    result = run_cli(talking, "deploy")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Talker: removing level silver deletes its 1 grant (keep the level, or deploy --force)\n"
        "Error: nothing was deployed: it would delete grants; "
        "`plaudit deploy --force` deletes them\n"
    )
    assert grants(sql) == [("poster", "default"), ("talker", "bronze"), ("talker", "silver")]
    assert sql("SELECT count(*) FROM plaudit.badge_level WHERE badge = 'talker'") == [(2,)]

    forced = run_cli(talking, "deploy", "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.stderr == (
        "Talker: level silver removed with its 1 grant\n"
        "deployed 2 rules (0 created, 1 changed)\n"
        "note: 1 rule is due for a backfill (changed: talker): until then incremental runs read "
        "their users' whole history; the nightly job or `plaudit backfill --select state:due` "
        "brings them up to date\n"
    )
    assert grants(sql) == [("poster", "default"), ("talker", "bronze")]
    # the deleted grant is in the log, with why
    assert sql("SELECT user_id, badge, level, action, source, reason FROM plaudit.grant_log") == [
        (1, "talker", "silver", "revoke", "rule", "deploy --force: level removed from the rule file")]


def test_removing_a_level_without_grants_needs_no_force(talking, run_cli, sql):
    edit(
        talking,
        "talker",
        "  - {key: silver, name: Talkative, threshold: 3, points: 10}\n",
        "  - {key: silver, name: Talkative, threshold: 3, points: 10}\n"
        "  - {key: gold, name: Town Crier, threshold: 100, points: 50}\n",
    )
    added = run_cli(talking, "deploy")
    assert added.stderr.splitlines()[0] == (
        "Talker: level gold added; existing grants stand; "
        "run `plaudit backfill --select talker` to award new ones"
    )
    edit(talking, "talker", "  - {key: gold, name: Town Crier, threshold: 100, points: 50}\n", "")
    removed = run_cli(talking, "deploy")
    assert removed.exit_code == 0
    assert removed.stderr.splitlines()[0] == "Talker: level gold removed"


def test_removing_a_badge_with_grants_is_refused_without_force(talking, run_cli, sql):
    (talking.path / "rules" / "poster.yaml").unlink()
    result = run_cli(talking, "deploy")
    assert result.exit_code == 1
    assert result.stderr == (
        "Poster: its rule file is gone, but it has 1 grant; removing the badge deletes them "
        "(restore the file with `enabled: false` to keep them)\n"
        "Error: nothing was deployed: it would delete grants; "
        "`plaudit deploy --force` deletes them\n"
    )
    # a deploy of selected rules never removes the others
    selected = run_cli(talking, "deploy", "--select", "talker")
    assert (selected.exit_code, selected.stdout) == (0, "")
    assert sql("SELECT slug FROM plaudit.badge ORDER BY 1") == [("poster",), ("talker",)]

    forced = run_cli(talking, "deploy", "--force")
    assert forced.exit_code == 0
    assert forced.stdout == "poster: removed\n"
    assert forced.stderr == (
        "Poster: its rule file is gone; badge removed with its 1 grant\n"
        "deployed 1 rule (0 created, 0 changed, 1 removed)\n"
    )
    assert sql("SELECT slug FROM plaudit.badge") == [("talker",)]
    assert grants(sql) == [("talker", "bronze"), ("talker", "silver")]
    assert sql("SELECT user_id, badge, level, action, source, reason FROM plaudit.grant_log") == [
        (1, "poster", "default", "revoke", "rule", "deploy --force: rule file removed")]


def test_a_disabled_rule_keeps_its_grants_and_stops_running(talking, run_cli, sql):
    edit(talking, "talker", "enabled: true", "enabled: false")
    result = run_cli(talking, "deploy")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == (
        "Talker: disabled: it stops running; existing grants stand"
    )
    assert sql("SELECT enabled FROM plaudit.badge WHERE slug = 'talker'") == [(False,)]
    assert grants(sql) == [("poster", "default"), ("talker", "bronze"), ("talker", "silver")]
    # a backfill leaves it out
    sql("DELETE FROM plaudit.user_badge WHERE badge = 'talker' AND level = 'silver'")
    backfill = run_cli(talking, "backfill")
    assert backfill.exit_code == 0
    assert grants(sql) == [("poster", "default"), ("talker", "bronze")]

    edit(talking, "talker", "enabled: false", "enabled: true")
    again = run_cli(talking, "deploy")
    assert again.stderr.splitlines()[0] == (
        "Talker: enabled again; existing grants stand; "
        "run `plaudit backfill --select talker` to award new ones"
    )


def test_a_dry_run_shows_the_changes_and_writes_nothing(talking, run_cli, sql):
    edit(talking, "talker", "threshold: 2,", "threshold: 1,")
    talking.write(
        "rules/fresh.yaml",
        """
        slug: fresh
        name: Fresh
        kind: award
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at
          FROM users AS u
        """,
    )
    definitions = sql("SELECT slug, definition_hash FROM plaudit.badge ORDER BY 1")
    result = run_cli(talking, "deploy", "--dry-run")
    assert result.exit_code == 0
    assert result.stdout == "fresh: created\ntalker: changed\n"
    assert result.stderr == (
        "Talker: bronze threshold 2 → 1; existing grants stand; "
        "run `plaudit backfill --select talker` to award new ones\n"
        "dry run: would deploy 3 rules (1 created, 1 changed); nothing was written\n"
    )
    assert sql("SELECT slug, definition_hash FROM plaudit.badge ORDER BY 1") == definitions

    # a dry run is refused like a deploy would be
    edit(talking, "talker", "  - {key: silver, name: Talkative, threshold: 3, points: 10}\n", "")
    refused = run_cli(talking, "deploy", "--dry-run")
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[0] == (
        "Talker: removing level silver deletes its 1 grant (keep the level, or deploy --force)"
    )
    forced = run_cli(talking, "deploy", "--dry-run", "--force")
    assert forced.exit_code == 0
    assert forced.stderr.splitlines()[0] == (
        "Talker: bronze threshold 2 → 1; level silver removed with its 1 grant; existing "
        "grants stand; run `plaudit backfill --select talker` to award new ones"
    )
    assert grants(sql) == [("poster", "default"), ("talker", "bronze"), ("talker", "silver")]


def test_deploy_says_which_capture_triggers_it_installs_and_removes_dry_run_too(
        talking, run_cli, sql):
    def triggers():
        return sql("SELECT tgname FROM pg_trigger WHERE tgfoid = "
                   "'plaudit.capture_event()'::regprocedure ORDER BY 1")

    talking.write("plaudit.yaml", "events:\n"
                  "  comment_created: {table: comments, on: insert, user: author_id}\n")
    dry = run_cli(talking, "deploy", "--dry-run")
    assert (dry.exit_code, dry.stdout) == (
        0, "events.comment_created: capture trigger on comments installed\n")
    assert triggers() == []  # a dry run writes nothing, triggers included
    real = run_cli(talking, "deploy")
    assert (real.exit_code, real.stdout) == (
        0, "events.comment_created: capture trigger on comments installed\n")
    assert triggers() == [("plaudit_comment_created",)]
    talking.write("plaudit.yaml", "")
    removed = run_cli(talking, "deploy")
    assert (removed.exit_code, removed.stdout) == (
        0, "events.comment_created: capture trigger on comments removed\n")
    assert triggers() == []


def test_a_removed_badge_takes_its_progress_with_it(talking, run_cli, sql):
    assert sql("SELECT count(*) FROM plaudit.user_progress WHERE badge = 'talker'")[0][0] > 0
    (talking.path / "rules" / "talker.yaml").unlink()
    forced = run_cli(talking, "deploy", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert sql("SELECT badge FROM plaudit.user_progress") == []
