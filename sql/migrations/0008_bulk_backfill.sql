-- Migration 0008: what a backfill of many rules at once needs (issue 16).
--
-- user_progress without its foreign key to badge. The key was checked once per progress row
-- written: measured at 100k users (BENCHMARKS.md, 2026-11-30), 89,091 progress rows took
-- 2.8 s with it and 1.0-2.0 s without. What it guaranteed is kept otherwise: plaudit.run_rule
-- locks its badge row (FOR KEY SHARE) once per run, so a badge cannot be deleted while a run
-- writes its progress, and deploy deletes a removed badge's progress with its row
-- (sql/queries.sql, remove_badge_row), as ON DELETE CASCADE did.
ALTER TABLE {{ schema }}.user_progress DROP CONSTRAINT IF EXISTS user_progress_badge_fkey;

-- The users whose leaderboard scores wait to be recomputed: a backfill of several rules
-- defers the scores of each rule's transaction to here and recomputes them once, at its
-- end (plaudit.score_catch_up, sql/schema/009_leaderboard.sql), instead of once per rule
-- for every user each rule grants to. Logged: a backfill that dies half-way leaves them
-- here, for `plaudit status` to report and the next backfill to recompute.
CREATE TABLE {{ schema }}.score_stale (
    user_id {{ user_id_type }} PRIMARY KEY,
    since timestamptz NOT NULL DEFAULT now()
);
