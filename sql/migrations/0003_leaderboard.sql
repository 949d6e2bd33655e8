-- Migration 0003: what makes leaderboards fast at a million users (issue 14), and groups.
--
-- score: each user's points, number of grants and the time of the latest grant counted, over
-- all time (period 'all', period_start -infinity) and per calendar month and year in the
-- timezone recorded in meta 'score_timezone'. Kept in the same transaction as the grants by
-- triggers on user_badge (sql/schema/009_leaderboard.sql); built by plaudit.sync_scores when
-- deploy syncs plaudit.yaml's timezone. Day and week boards read user_badge directly: a day's
-- or a week's grants are few (user_badge_achieved_idx).
CREATE TABLE {{ schema }}.score (
    user_id {{ user_id_type }} NOT NULL,
    period text NOT NULL CHECK (period IN ('all', 'month', 'year')),
    period_start timestamptz NOT NULL,
    points bigint NOT NULL,
    badges int NOT NULL,
    reached_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, period, period_start)
);
-- a top 10 is the first ten entries of one of these, and a neighbour the entry next to a user
CREATE INDEX score_points_idx ON {{ schema }}.score
    (period, period_start, points DESC, reached_at, user_id);
CREATE INDEX score_badges_idx ON {{ schema }}.score
    (period, period_start, badges DESC, reached_at, user_id);

-- How many users hold each value on each board, so that a rank (1 + the users with a higher
-- value) sums a few hundred rows instead of counting a million. Append-only: a change adds
-- rows (+n, -n) and folds the rows of the values it touched that no other transaction holds
-- (SKIP LOCKED), so concurrent grants never wait for each other here. A value's users are the
-- sum of its rows.
CREATE TABLE {{ schema }}.score_count (
    period text NOT NULL,
    period_start timestamptz NOT NULL,
    measure text NOT NULL CHECK (measure IN ('points', 'badges')),
    value bigint NOT NULL,
    users bigint NOT NULL
);
CREATE INDEX score_count_value_idx ON {{ schema }}.score_count
    (period, period_start, measure, value);

-- The users whose scores the current transaction must recompute when it commits, noted by
-- the triggers on user_badge, and one row per such transaction whose deferred trigger does
-- it (sql/schema/009_leaderboard.sql). Unlogged: rows live only until their transaction
-- ends (a crash rolls their transaction back anyway).
CREATE UNLOGGED TABLE {{ schema }}.score_pending (
    txid bigint NOT NULL,
    user_id {{ user_id_type }} NOT NULL
);
CREATE INDEX score_pending_txid_idx ON {{ schema }}.score_pending (txid);
CREATE UNLOGGED TABLE {{ schema }}.score_pending_tx (
    txid bigint PRIMARY KEY
);

-- the grants of a day or a week, for those boards; covering, so no table lookups
CREATE INDEX user_badge_achieved_idx ON {{ schema }}.user_badge (achieved_at)
    INCLUDE (user_id, badge, level);

-- Leaderboard groups (friends, classrooms, teams), synced from plaudit.yaml's `groups:` by
-- deploy: a SELECT returning (group_id, user_id), run under the rule boundary.
CREATE TABLE {{ schema }}.leaderboard_group (
    name text PRIMARY KEY,
    query text NOT NULL
);
