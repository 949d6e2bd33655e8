"""The outbox (issue 17), database side: what enters it (news, not quiet grants; revocations),
in the grant's transaction; the fan-out to the endpoints whose badges and tags match; deploy's
sync of the endpoints; retention; and what `plaudit status` says about it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.runner import run_batch

TALKER = """
    slug: talker
    name: Talker
    kind: count
    triggers: [comment_created]
    tags: [community]
    levels:
      - {key: bronze, name: Chatty, threshold: 1, points: 5}
      - {key: silver, name: Talkative, threshold: 2, points: 10}
      - {key: gold, name: Orator, threshold: 3, points: 20}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at
      FROM comments AS c
      WHERE {{ affected('c.author_id') }}
"""

POSTER = """
    slug: poster
    name: Poster
    kind: count
    triggers: [post_created]
    tags: [writing]
    revoke: true
    levels:
      - {key: first, name: First Post, threshold: 1, points: 3}
    query: |
      SELECT p.author_id AS user_id, p.created_at AS occurred_at
      FROM posts AS p
      WHERE p.kind = 'question' AND {{ affected('p.author_id') }}
"""

WEBHOOKS = """
webhooks:
  endpoints:
    everything: {url: "http://127.0.0.1:9/all", secret: one}
    talk: {url: "http://127.0.0.1:9/talk", secret: two, badges: [talker]}
    writing: {url: "http://127.0.0.1:9/writing", secret_env: PLAUDIT_TEST_SECRET, tags: [writing]}
  coalesce: 0s
"""


def now():
    return datetime.now(UTC).replace(microsecond=0)


def seed(sql, comments=(), posts=(), track=True):
    """comments, posts: (author_id, created_at); each also a queued event with track."""
    users = sorted({a for a, _ in [*comments, *posts]} | {1})
    sql("INSERT INTO users (id, name, created_at) SELECT u, 'u' || u, '2020-01-01' "
        "FROM unnest(%s::bigint[]) AS u ON CONFLICT DO NOTHING", [users])
    sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, 1, 'article', 'hello', '2020-01-01') ON CONFLICT DO NOTHING")
    for author, at in comments:
        sql("INSERT INTO comments (post_id, author_id, body, created_at) VALUES (1, %s, 'x', %s)",
            [author, at])
        if track:
            sql("SELECT plaudit.track('comment_created', %s, %s)", [author, at])
    for author, at in posts:
        sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
            "SELECT max(id) + 1, %s, 'question', 't', %s FROM posts", [author, at])
        if track:
            sql("SELECT plaudit.track('post_created', %s, %s)", [author, at])


@pytest.fixture
def site(project, deployed, sql):
    """Both rules deployed, with the three endpoints."""
    project.write("plaudit.yaml", WEBHOOKS)
    return deployed(TALKER, POSTER)


def outbox(sql):
    return sql("SELECT user_id, action, badge, level, scope FROM plaudit.outbox ORDER BY 1, 2, 3, 4")


def deliveries(sql):
    return sql("SELECT webhook, user_id, badge, level, d.status FROM plaudit.delivery AS d "
               "JOIN plaudit.outbox AS o USING (user_id, notice_id) ORDER BY 1, 2, 3, 4")


def test_incremental_grants_enter_the_outbox_with_what_notify_says(site, sql, dsn):
    listener = psycopg.connect(dsn, autocommit=True)
    listener.execute("LISTEN plaudit_award")
    seed(sql, comments=[(7, now()), (7, now()), (8, now())], posts=[(8, now())])
    run_batch(site, 100)
    notified = sorted((json.loads(n.payload) for n in listener.notifies(timeout=0.3)
                       if n.channel == "plaudit_award"), key=json.dumps)
    listener.close()
    # exactly the unseen grants: computed from user_badge, not from the outbox code
    expected = sql("SELECT user_id, 'grant', badge, level, scope FROM plaudit.user_badge "
                   "WHERE seen_at IS NULL ORDER BY 1, 2, 3, 4")
    assert outbox(sql) == expected == [
        (7, "grant", "talker", "bronze", ""), (7, "grant", "talker", "silver", ""),
        (8, "grant", "poster", "first", ""), (8, "grant", "talker", "bronze", "")]
    stored = sorted((r[0] for r in sql("SELECT notice FROM plaudit.outbox")), key=json.dumps)
    assert stored == notified  # the same notice, both ways
    assert sql("SELECT count(DISTINCT notice_id) FROM plaudit.outbox") == [(4,)]
    # each endpoint takes the badges its filters select, nothing else
    assert deliveries(sql) == [
        ("everything", 7, "talker", "bronze", "pending"),
        ("everything", 7, "talker", "silver", "pending"),
        ("everything", 8, "poster", "first", "pending"),
        ("everything", 8, "talker", "bronze", "pending"),
        ("talk", 7, "talker", "bronze", "pending"),
        ("talk", 7, "talker", "silver", "pending"),
        ("talk", 8, "talker", "bronze", "pending"),
        ("writing", 8, "poster", "first", "pending")]


def test_the_outbox_commits_or_rolls_back_with_the_grants(site, sql):
    seed(sql, comments=[(7, now())])
    conn = site.db.conn
    with conn.transaction(force_rollback=True):
        site.db.execute("take_events", [100])
        site.run_batch_rules()
        assert len(outbox(sql)) == 0  # not visible before the commit
    assert outbox(sql) == [] and sql("SELECT count(*) FROM plaudit.user_badge") == [(0,)]
    run_batch(site, 100)
    assert outbox(sql) == [(7, "grant", "talker", "bronze", "")]


def test_quiet_backfill_grants_stay_out_announced_ones_go_in(project, site, sql):
    old = now() - timedelta(days=30)
    seed(sql, comments=[(7, old), (7, old), (8, now())], track=False)
    site.backfill(project.rules())
    assert outbox(sql) == []  # quiet: seen already, notified to nobody
    sql("DELETE FROM plaudit.user_badge")
    site.backfill(project.rules(), announce=True)
    # announced, but grants older than notify.max_age (2 days) stay quiet
    assert outbox(sql) == [(8, "grant", "talker", "bronze", "")]
    assert outbox(sql) == sql("SELECT user_id, 'grant', badge, level, scope "
                              "FROM plaudit.user_badge WHERE seen_at IS NULL")


def test_awards_and_revocations_enter_the_outbox(project, site, sql):
    seed(sql, comments=[(7, now()), (7, now())], posts=[(9, now())], track=False)
    site.backfill(project.rules())
    assert outbox(sql) == []
    site.award("poster", 7, "imported")
    site.revoke("talker", 7, "spam", level="silver")
    # a revoke: true rule's backfill revokes quietly, unless announced
    sql("DELETE FROM posts WHERE author_id = 9")
    site.backfill([r for r in project.rules() if r.slug == "poster"])
    assert sql("SELECT count(*) FROM plaudit.user_badge WHERE user_id = 9") == [(0,)]
    assert outbox(sql) == [(7, "grant", "poster", "first", ""),
                           (7, "revoke", "talker", "silver", "")]
    site.award("poster", 9, "back")
    sql("DELETE FROM plaudit.user_badge WHERE user_id = 9")  # as if held by the rule
    sql("INSERT INTO plaudit.user_badge (user_id, badge, level, achieved_at, source) "
        "VALUES (9, 'poster', 'first', now(), 'rule')")
    site.backfill([r for r in project.rules() if r.slug == "poster"], announce=True)
    assert [r for r in outbox(sql) if r[0] == 9] == [
        (9, "grant", "poster", "first", ""), (9, "revoke", "poster", "first", "")]
    [(notice,)] = sql("SELECT notice FROM plaudit.outbox WHERE action = 'revoke' AND user_id = 7")
    assert notice["level"] == "silver" and notice["name"] == "Talkative"


def test_without_webhooks_nothing_is_written(project, deployed, sql):
    engine = deployed(TALKER)
    seed(sql, comments=[(7, now())])
    run_batch(engine, 100)
    engine.award("talker", 8, "by hand", level="gold")
    engine.revoke("talker", 7, "spam")
    assert sql("SELECT count(*) FROM plaudit.user_badge") == [(1,)]
    assert outbox(sql) == []


def test_deploy_syncs_the_endpoints_and_removing_one_drops_its_rows(
        project, site, sql, engine_for):
    assert sql("SELECT name, url, badges, tags, coalesce_window FROM plaudit.webhook "
               "ORDER BY 1") == [
        ("everything", "http://127.0.0.1:9/all", [], [], timedelta(0)),
        ("talk", "http://127.0.0.1:9/talk", ["talker"], [], timedelta(0)),
        ("writing", "http://127.0.0.1:9/writing", [], ["writing"], timedelta(0))]
    seed(sql, comments=[(7, now())])
    run_batch(site, 100)
    project.write("plaudit.yaml", WEBHOOKS.replace(
        '    talk: {url: "http://127.0.0.1:9/talk", secret: two, badges: [talker]}\n', "")
        .replace("/all", "/everything").replace("coalesce: 0s", "coalesce: 3s"))
    deploy_rules(engine_for(project), project.rules())
    assert sql("SELECT name, url, coalesce_window FROM plaudit.webhook ORDER BY 1") == [
        ("everything", "http://127.0.0.1:9/everything", timedelta(seconds=3)),
        ("writing", "http://127.0.0.1:9/writing", timedelta(seconds=3))]
    assert [r[0] for r in deliveries(sql)] == ["everything"]  # talk's went with it


def test_retention_prunes_only_what_every_endpoint_delivered(site, sql):
    seed(sql, comments=[(u, now()) for u in (1, 2, 3, 4)])
    run_batch(site, 100)
    # 1: delivered everywhere, old; 2: delivered everywhere, recent; 3: old, one endpoint
    # still pending; 4: old, a dead letter
    sql("UPDATE plaudit.delivery SET status = 'delivered', delivered_at = now() "
        "WHERE user_id IN (1, 2) OR (user_id = 3 AND webhook = 'everything')")
    sql("UPDATE plaudit.delivery SET status = 'dead' WHERE user_id = 4")
    sql("UPDATE plaudit.outbox SET created_at = now() - interval '8 days' WHERE user_id <> 2")
    assert sql("SELECT plaudit.prune_outbox('7 days')") == [(1,)]
    assert [r[0] for r in outbox(sql)] == [2, 3, 4]
    assert sql("SELECT DISTINCT user_id FROM plaudit.delivery ORDER BY 1") == [(2,), (3,), (4,)]
    # the nightly job applies retention.outbox
    sql("UPDATE plaudit.outbox SET created_at = now() - interval '8 days'")
    sql("CALL plaudit.job_nightly('60s', '30 days', '7 days')")
    assert [r[0] for r in outbox(sql)] == [3, 4]


def test_status_shows_the_outbox_and_dead_letters_need_attention(project, site, sql, run_cli):
    seed(sql, comments=[(7, now()), (8, now())])
    run_batch(site, 100)
    sql("UPDATE plaudit.delivery SET queued_at = now() - interval '90 seconds'")
    sql("UPDATE plaudit.badge SET due = NULL")  # as after their first backfill
    result = run_cli(project, "status", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)["outbox"]
    assert (report["pending"], report["dead"]) == (4, 0)
    assert 90 <= report["oldest_pending_seconds"] < 120
    assert [(w["webhook"], w["pending"], w["dead"]) for w in report["webhooks"]] == [
        ("everything", 2, 0), ("talk", 2, 0), ("writing", 0, 0)]

    sql("UPDATE plaudit.delivery SET status = 'dead', last_error = 'HTTP 500' "
        "WHERE webhook = 'talk' AND user_id = 7")
    result = run_cli(project, "status")
    assert result.exit_code == 1
    assert "outbox: 3 pending, the oldest waiting for 1m, 1 dead letter" in result.stdout
    assert "talk        http://127.0.0.1:9/talk           1  1m         1  HTTP 500" in (
        result.stdout)
    assert result.stderr.splitlines() == [
        "attention: 1 dead letter (talk: 1): delivery gave up on them "
        "(webhooks.retry.give_up_after); once the endpoint is fixed, "
        "`plaudit deliver --retry-dead` sends them again"]
    # a notice undelivered for longer than --max-lag needs attention too
    result = run_cli(project, "status", "--max-lag", "30s")
    assert "attention: the oldest undelivered notice has waited 1m (more than 30s)" in (
        result.stderr)
