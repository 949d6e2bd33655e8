"""The bundled rules of every kind against naive SQL on the demo data: same grants, same dates.

The kinds avoid sorting the source; these reference queries sort and window everything,
the obvious way, so a shortcut that loses exactness shows up as a difference.
"""

from __future__ import annotations

import pytest

from plaudit.runtime.deploy import deploy_rules

LEVELS = {
    "points_milestone": "(VALUES ('bronze', 100), ('silver', 500), ('gold', 1000))",
    "consistency_champion": "(VALUES ('bronze', 7), ('silver', 30), ('gold', 90), "
                            "('platinum', 180), ('diamond', 365))",
    "weekly_writer": "(VALUES ('bronze', 4), ('silver', 12), ('gold', 26), ('platinum', 52))",
    "sharpshooter": "(VALUES ('bronze', 75), ('silver', 90), ('gold', 99))",
    "rising_star": "(VALUES ('bronze', 25), ('silver', 50), ('gold', 100))",
    "influencer": "(VALUES ('bronze', 1), ('silver', 3), ('gold', 5), ('platinum', 7), "
                  "('diamond', 10))",
}

CONTRIBUTIONS = """
    SELECT author_id AS user_id, created_at AS at, 10 AS amount FROM posts
    UNION ALL SELECT author_id, created_at, 2 FROM comments
    UNION ALL SELECT user_id, submitted_at, 5 FROM challenge_entries"""

EXPECTED = {
    # the running sum with rows at the same instant together (RANGE frame), first >= t
    "points_milestone": f"""
        WITH running AS (
            SELECT user_id, at, sum(amount) OVER (PARTITION BY user_id ORDER BY at) AS total
            FROM ({CONTRIBUTIONS}) AS c)
        SELECT r.user_id, l.key, min(r.at)
        FROM running AS r JOIN {LEVELS['points_milestone']} AS l (key, t) ON r.total >= l.t
        GROUP BY 1, 2""",
    # every active UTC day numbered within its run; the earliest run's t-th day, first row
    "consistency_champion": """
        WITH activity AS (
            SELECT author_id AS user_id, created_at AS at FROM comments
            UNION ALL SELECT author_id, created_at FROM posts
            UNION ALL SELECT reader_id, read_at FROM article_reads
            UNION ALL SELECT user_id, submitted_at FROM challenge_entries),
        days AS (
            SELECT user_id, (at AT TIME ZONE 'UTC')::date AS day, min(at) AS first_at
            FROM activity GROUP BY 1, 2),
        runs AS (
            SELECT *, day - (row_number() OVER (PARTITION BY user_id ORDER BY day))::int AS run
            FROM days),
        numbered AS (
            SELECT *, row_number() OVER (PARTITION BY user_id, run ORDER BY day) AS n FROM runs)
        SELECT DISTINCT ON (n.user_id, l.key) n.user_id, l.key, n.first_at
        FROM numbered AS n JOIN """ + LEVELS["consistency_champion"] + """ AS l (key, t)
          ON n.n = l.t
        ORDER BY n.user_id, l.key, n.day""",
    "weekly_writer": """
        WITH weeks AS (
            SELECT author_id AS user_id,
                   date_trunc('week', created_at AT TIME ZONE 'UTC')::date AS week,
                   min(created_at) AS first_at
            FROM posts GROUP BY 1, 2),
        runs AS (
            SELECT *, week - 7 * (row_number() OVER (PARTITION BY user_id ORDER BY week))::int
                   AS run
            FROM weeks),
        numbered AS (
            SELECT *, row_number() OVER (PARTITION BY user_id, run ORDER BY week) AS n FROM runs)
        SELECT DISTINCT ON (n.user_id, l.key) n.user_id, l.key, n.first_at
        FROM numbered AS n JOIN """ + LEVELS["weekly_writer"] + """ AS l (key, t) ON n.n = l.t
        ORDER BY n.user_id, l.key, n.week""",
    "sharpshooter": f"""
        SELECT e.user_id, l.key, min(e.submitted_at)
        FROM challenge_entries AS e JOIN {LEVELS['sharpshooter']} AS l (key, t) ON e.score >= l.t
        GROUP BY 1, 2""",
    # month totals against the calendar month before, completed months only
    "rising_star": f"""
        WITH months AS (
            SELECT user_id, date_trunc('month', at AT TIME ZONE 'UTC') AS month,
                   count(*) AS total
            FROM ({CONTRIBUTIONS}) AS c GROUP BY 1, 2),
        growth AS (
            SELECT m.user_id, (m.month + interval '1 month') AT TIME ZONE 'UTC' AS ends,
                   (m.total - p.total) * 100.0 / p.total AS pct
            FROM months AS m
            JOIN months AS p ON p.user_id = m.user_id AND p.month = m.month - interval '1 month'
            WHERE (m.month + interval '1 month') AT TIME ZONE 'UTC' <= now())
        SELECT g.user_id, l.key, min(g.ends)
        FROM growth AS g JOIN {LEVELS['rising_star']} AS l (key, t) ON g.pct >= l.t
        GROUP BY 1, 2""",
    # the n-th different commenter on a user's posts
    "influencer": f"""
        WITH firsts AS (
            SELECT p.author_id AS user_id, min(c.created_at) AS at
            FROM comments AS c JOIN posts AS p ON p.id = c.post_id
            WHERE c.author_id <> p.author_id
            GROUP BY p.author_id, c.author_id),
        numbered AS (
            SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY at) AS n FROM firsts)
        SELECT n.user_id, l.key, n.at
        FROM numbered AS n JOIN {LEVELS['influencer']} AS l (key, t) ON n.n = l.t""",
}


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_bundled_rule_matches_naive_sql_on_demo_data(slug, demo_project, engine_for, sql):
    sql("SELECT * FROM demo_generate(300, 20000)")
    rules = [r for r in demo_project.rules() if r.slug == slug]
    engine = engine_for(demo_project)
    deploy_rules(engine, rules)
    [result] = engine.backfill(rules)
    assert result.status == "ok", result.message
    expected = sql(f"SELECT * FROM ({EXPECTED[slug]}) AS e ORDER BY 1, 2")
    assert len(expected) >= 5
    assert sql("SELECT user_id, level, achieved_at FROM plaudit.user_badge ORDER BY 1, 2") == (
        expected)
