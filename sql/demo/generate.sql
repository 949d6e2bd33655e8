-- Demo data generator for the demo community app (tables in schema.sql). Plain SQL,
-- re-runnable (CREATE OR REPLACE), PostgreSQL 15.
--
--   SELECT * FROM public.demo_generate();                    -- 10k users, 500k activities
--   SELECT * FROM public.demo_generate(1000000, 10000000);   -- benchmark size
--
-- TRUNCATEs the six demo tables and refills them. Set-based: every table is one INSERT ... SELECT
-- over generate_series. Deterministic for a given seed: setseed(seed) comes first, every random
-- value is drawn while scanning generate_series (in series order, before any join), and ids come
-- from a sort with a total order, so the same arguments always give the same rows whatever join
-- order the planner picks. All timestamps are whole seconds in the two years before a fixed
-- anchor (2026-11-01 00:00:00+00, never now()), so data and dates are stable.
--
-- Shape of the data:
--   * ids follow time, as in a real app: users.id in created_at order, posts/comments/
--     article_reads ids in created_at/read_at order (rows are also stored in that order).
--   * the acting user of an activity is floor(n_users * random()^k) + 1, so LOW USER IDS ARE THE
--     HEAVY USERS (the early adopters; id 1 is the most active) and high ids form the long tail
--     (thousands of users with 0..9 comments at the default size).
--   * n_activities is split about 55 : 8 : 30 : 7 into comments, posts (70 of 100 are
--     articles), article reads and challenge entries.
--   * every activity happens after its user's created_at; comments and reads also happen after
--     the post they refer to. Reads only point at articles, heavily skewed towards the oldest
--     articles, so a few get 1000+ reads.
--   * ties: 1 in 10 comment/post timestamps is truncated to the minute, and 2 in 100 comments are
--     double submits (same author, post, body and created_at; consecutive ids), so
--     comments(author_id, created_at) has duplicates for heavy and light users alike.
--   * max(20, n_users / 500) challenges, ids in ends_at order; the last two are still running
--     (ends_at after the anchor, final_rank NULL).
--     Entries: users skewed (random()^2), score 0.0..100.0 in steps of 0.1 (many ties). For ended challenges final_rank is 1..n without
--     gaps or repeats: score DESC (higher is better), then submitted_at, then user_id.
--     A user enters a challenge at most once, and only challenges that end after they joined.
--
-- Bulk load: the foreign keys between the demo tables and their non-constraint indexes are
-- dropped first and recreated afterwards from their catalog definitions (pg_get_constraintdef /
-- pg_get_indexdef), which is several times faster than maintaining them row by row. All of this
-- runs inside the caller's transaction, so a failure leaves the schema as it was. The caller
-- must own the demo tables. A foreign key from some other table into the demo tables makes the
-- TRUNCATE fail (no CASCADE, on purpose).
--
-- Timing (2 vCPU, fsync=off, logged tables): 10k users / 500k activities about 3.5 s;
-- 100k / 2M about 16-18 s; 1M / 10M about 90 s.

CREATE OR REPLACE FUNCTION public.demo_generate(
    n_users int DEFAULT 10000,
    n_activities int DEFAULT 500000,
    seed double precision DEFAULT 0.42
)
RETURNS TABLE (table_name text, row_count bigint)
LANGUAGE plpgsql
VOLATILE
-- hash joins against users/posts and the id sorts stay in memory at the default size, and the
-- index rebuilds get room at benchmark sizes
SET work_mem = '256MB'
SET maintenance_work_mem = '512MB'
-- row estimates through the materialized CTEs are far off; JIT compiling for them costs more
-- than it saves
SET jit = off
AS $fn$
DECLARE
    anchor constant timestamptz := '2026-11-01 00:00:00+00';
    -- anchor - 2 years, spelled out: timestamptz - interval '2 years' depends on the session
    -- TimeZone
    t0 constant timestamptz := '2024-11-01 00:00:00+00';
    -- epoch seconds: timestamps are drawn as floor(lo + (hi - lo) * random()), whole seconds
    -- (date_part returns double precision; extract() would do slow numeric arithmetic)
    t0_s constant double precision := date_part('epoch', t0);
    end_s constant double precision := date_part('epoch', anchor);
    span_s constant double precision := end_s - t0_s;
    -- 2 in 100 comments get a double-submitted twin, so fewer base comments are drawn
    dup_p constant double precision := 0.02;
    demo_tables constant regclass[] := ARRAY[
        'public.users', 'public.posts', 'public.comments', 'public.article_reads',
        'public.challenges', 'public.challenge_entries']::regclass[];
    fk_defs text[];
    index_defs text[];
    stmt text;
    n_comments bigint;
    n_comment_base bigint;
    n_posts bigint;
    n_reads bigint;
    n_entries bigint;
    n_articles bigint;
    n_challenges bigint;
    n_ended bigint;
    step_s double precision;
    c_users bigint;
    c_posts bigint;
    c_comments bigint;
    c_reads bigint;
    c_challenges bigint;
    c_entries bigint;
BEGIN
    IF n_users IS NULL OR n_users < 1 THEN
        RAISE EXCEPTION USING MESSAGE = 'demo_generate: n_users must be at least 1, got '
                                        || coalesce(n_users::text, 'NULL');
    END IF;
    IF n_activities IS NULL OR n_activities < 0 THEN
        RAISE EXCEPTION USING MESSAGE = 'demo_generate: n_activities must be >= 0, got '
                                        || coalesce(n_activities::text, 'NULL');
    END IF;

    PERFORM setseed(seed);

    n_comments := round(n_activities * 0.55);
    n_comment_base := round(n_comments / (1 + dup_p));
    n_posts := round(n_activities * 0.08);
    n_reads := round(n_activities * 0.30);
    n_entries := greatest(n_activities - n_comments - n_posts - n_reads, 0);
    n_challenges := greatest(20, n_users / 500);
    n_ended := n_challenges - 2;
    -- ended challenge i ends in [t0 + (i - 0.25) * step, t0 + i * step]; the last ended one at
    -- most a day before the anchor
    step_s := (span_s - 86400) / n_ended;

    -- drop foreign keys among the demo tables and plain indexes; remember how to recreate them
    SELECT array_agg('ALTER TABLE ' || c.conrelid::regclass || ' ADD CONSTRAINT '
                     || quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid)
                     ORDER BY c.conrelid, c.conname)
    INTO fk_defs
    FROM pg_constraint AS c
    WHERE c.contype = 'f' AND c.conrelid = ANY (demo_tables);

    SELECT array_agg(pg_get_indexdef(i.indexrelid) ORDER BY i.indexrelid)
    INTO index_defs
    FROM pg_index AS i
    WHERE i.indrelid = ANY (demo_tables)
      AND NOT EXISTS (SELECT FROM pg_constraint AS c
                      WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'));

    FOR stmt IN
        SELECT 'ALTER TABLE ' || c.conrelid::regclass || ' DROP CONSTRAINT '
               || quote_ident(c.conname)
        FROM pg_constraint AS c
        WHERE c.contype = 'f' AND c.conrelid = ANY (demo_tables)
        UNION ALL
        SELECT 'DROP INDEX ' || i.indexrelid::regclass
        FROM pg_index AS i
        WHERE i.indrelid = ANY (demo_tables)
          AND NOT EXISTS (SELECT FROM pg_constraint AS c
                          WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))
    LOOP
        EXECUTE stmt;
    END LOOP;

    TRUNCATE public.challenge_entries, public.challenges, public.article_reads,
             public.comments, public.posts, public.users;

    -- users: created_at skewed towards the start, ids in created_at order ------------------
    INSERT INTO public.users (id, name, created_at)
    SELECT id, 'user_' || id, created_at
    FROM (
        SELECT row_number() OVER (ORDER BY created_at, g) AS id, g, created_at
        FROM (
            SELECT g, to_timestamp(t0_s + floor(span_s * 0.95 * random() ^ 1.5)) AS created_at
            FROM generate_series(1, n_users) AS g
        ) AS draw
    ) AS s
    ORDER BY created_at, g;
    GET DIAGNOSTICS c_users = ROW_COUNT;

    -- posts: authors skewed (random()^3), 70 in 100 are articles ---------------------------
    INSERT INTO public.posts (id, author_id, kind, title, created_at)
    WITH draw AS MATERIALIZED (
        SELECT g,
               floor(n_users * random() ^ 3)::bigint + 1 AS author_id,
               random() < 0.7 AS is_article,
               random() AS t,
               random() < 0.1 AS to_minute
        FROM generate_series(1, n_posts) AS g
    ),
    timed AS (
        SELECT d.g, d.author_id, d.is_article, d.to_minute, u.created_at AS lo,
               to_timestamp(floor(date_part('epoch', u.created_at)
                                  + (end_s - date_part('epoch', u.created_at)) * d.t)) AS ts
        FROM draw AS d
        JOIN public.users AS u ON u.id = d.author_id
    ),
    rounded AS (
        SELECT g, author_id, is_article,
               CASE WHEN to_minute THEN greatest(date_trunc('minute', ts), lo) ELSE ts END
                   AS created_at
        FROM timed
    ),
    numbered AS (
        SELECT row_number() OVER (ORDER BY created_at, g) AS id,
               g, author_id, is_article, created_at
        FROM rounded
    )
    SELECT id, author_id,
           CASE WHEN is_article THEN 'article' ELSE 'question' END,
           CASE WHEN is_article THEN 'Article #' ELSE 'Question #' END || id,
           created_at
    FROM numbered
    ORDER BY created_at, g;
    GET DIAGNOSTICS c_posts = ROW_COUNT;

    -- comments: authors heavily skewed (random()^4), posts skewed to the oldest (random()^2) -
    IF c_posts > 0 THEN
        INSERT INTO public.comments (id, post_id, author_id, body, created_at)
        WITH draw AS MATERIALIZED (
            SELECT g,
                   floor(n_users * random() ^ 4)::bigint + 1 AS author_id,
                   floor(c_posts * random() ^ 2)::bigint + 1 AS post_id,
                   random() AS t,
                   random() < 0.1 AS to_minute,
                   random() < dup_p AS dup
            FROM generate_series(1, n_comment_base) AS g
        ),
        bounds AS (
            SELECT d.*, greatest(u.created_at, p.created_at) AS lo
            FROM draw AS d
            JOIN public.users AS u ON u.id = d.author_id
            JOIN public.posts AS p ON p.id = d.post_id
        ),
        timed AS (
            SELECT b.*,
                   to_timestamp(floor(date_part('epoch', b.lo)
                                      + (end_s - date_part('epoch', b.lo)) * b.t)) AS ts
            FROM bounds AS b
        ),
        rounded AS (
            SELECT g, author_id, post_id, dup,
                   CASE WHEN to_minute THEN greatest(date_trunc('minute', ts), lo) ELSE ts END
                       AS created_at
            FROM timed
        ),
        numbered AS (
            SELECT row_number() OVER (ORDER BY c.created_at, c.g, v.twin) AS id,
                   c.g, v.twin, c.post_id, c.author_id, c.created_at
            FROM rounded AS c
            CROSS JOIN LATERAL (VALUES (0), (1)) AS v (twin)
            WHERE v.twin = 0 OR c.dup
        )
        SELECT id, post_id, author_id, 'Comment ' || g || ' on post ' || post_id, created_at
        FROM numbered
        ORDER BY created_at, g, twin;
        GET DIAGNOSTICS c_comments = ROW_COUNT;
    ELSE
        c_comments := 0;
    END IF;

    -- article reads: readers skewed (random()^3), articles heavily skewed (random()^4) -----
    SELECT count(*) INTO n_articles FROM public.posts WHERE kind = 'article';
    IF n_articles > 0 THEN
        INSERT INTO public.article_reads (id, post_id, reader_id, read_at)
        WITH draw AS MATERIALIZED (
            SELECT g,
                   floor(n_users * random() ^ 3)::bigint + 1 AS reader_id,
                   floor(n_articles * random() ^ 4)::bigint + 1 AS article_no,
                   random() AS t
            FROM generate_series(1, n_reads) AS g
        ),
        article AS MATERIALIZED (
            SELECT row_number() OVER (ORDER BY id) AS article_no, id, created_at
            FROM public.posts
            WHERE kind = 'article'
        ),
        bounds AS (
            SELECT d.g, d.reader_id, a.id AS post_id, d.t,
                   date_part('epoch', greatest(u.created_at, a.created_at)) AS lo_s
            FROM draw AS d
            JOIN article AS a ON a.article_no = d.article_no
            JOIN public.users AS u ON u.id = d.reader_id
        ),
        numbered AS (
            SELECT g, post_id, reader_id,
                   to_timestamp(floor(lo_s + (end_s - lo_s) * t)) AS read_at
            FROM bounds
        )
        SELECT row_number() OVER (ORDER BY read_at, g), post_id, reader_id, read_at
        FROM numbered
        ORDER BY read_at, g;
        GET DIAGNOSTICS c_reads = ROW_COUNT;
    ELSE
        c_reads := 0;
    END IF;

    -- challenges: ids in time order, the last two still running ----------------------------
    INSERT INTO public.challenges (id, title, starts_at, ends_at)
    SELECT i, 'Challenge #' || i,
           CASE WHEN i <= n_ended
                THEN greatest(t0, to_timestamp(e - floor(86400 * (3 + 25 * r_len))))
                ELSE anchor - floor(86400 * (1 + 13 * r_len)) * interval '1 second'
           END,
           CASE WHEN i <= n_ended
                THEN to_timestamp(e)
                ELSE anchor + floor(86400 * (7 + 21 * r_len)) * interval '1 second'
           END
    FROM (
        SELECT i, random() AS r_len,
               floor(t0_s + step_s * (i - 0.25 * random())) AS e
        FROM generate_series(1, n_challenges) AS i
    ) AS s;
    GET DIAGNOSTICS c_challenges = ROW_COUNT;

    -- challenge entries ------------------------------------------------------------------
    -- The challenge is drawn uniformly among those the user can still enter: ended challenge i
    -- ends after t0 + (i - 0.25) * step, so every challenge from
    -- first_open = floor(joined / step + 0.25) + 1 on ends after the user's created_at.
    -- Half again as many entries are drawn as needed; after dropping repeated
    -- (challenge, user) draws the first n_entries draws are kept.
    INSERT INTO public.challenge_entries
        (challenge_id, user_id, score, submitted_at, final_rank)
    WITH draw AS MATERIALIZED (
        SELECT g,
               floor(n_users * random() ^ 2)::bigint + 1 AS user_id,
               random() AS r_challenge,
               random() AS t,
               round((100 * random())::numeric, 1) AS score
        FROM generate_series(1, n_entries * 3 / 2) AS g
    ),
    picked AS (
        SELECT d.*, u.created_at,
               f.first_open + floor((n_challenges - f.first_open + 1) * d.r_challenge)::bigint
                   AS challenge_id
        FROM draw AS d
        JOIN public.users AS u ON u.id = d.user_id
        CROSS JOIN LATERAL (
            SELECT least(floor((date_part('epoch', u.created_at) - t0_s) / step_s + 0.25)::bigint
                         + 1,
                         n_challenges - 1) AS first_open
        ) AS f
    ),
    once AS (
        SELECT DISTINCT ON (challenge_id, user_id) *
        FROM picked
        ORDER BY challenge_id, user_id, g
    ),
    kept AS (
        SELECT *
        FROM once
        ORDER BY g
        LIMIT n_entries
    ),
    timed AS (
        SELECT k.challenge_id, k.user_id, k.score, c.ends_at,
               to_timestamp(floor(b.lo_s + (b.hi_s - b.lo_s) * k.t)) AS submitted_at
        FROM kept AS k
        JOIN public.challenges AS c ON c.id = k.challenge_id
        CROSS JOIN LATERAL (
            SELECT date_part('epoch', greatest(c.starts_at, k.created_at)) AS lo_s,
                   date_part('epoch', least(c.ends_at, anchor)) AS hi_s
        ) AS b
        -- always true by construction; a guard so no entry is ever outside its challenge
        WHERE b.lo_s < b.hi_s
    ),
    ranked AS (
        SELECT challenge_id, user_id, score, submitted_at,
               CASE WHEN ends_at <= anchor
                    THEN row_number() OVER (PARTITION BY challenge_id
                                            ORDER BY score DESC, submitted_at, user_id)::int
               END AS final_rank
        FROM timed
    )
    SELECT challenge_id, user_id, score, submitted_at, final_rank
    FROM ranked
    ORDER BY submitted_at, challenge_id, user_id;
    GET DIAGNOSTICS c_entries = ROW_COUNT;

    -- identity columns: the next plain INSERT gets max(id) + 1 -----------------------------
    PERFORM setval(pg_get_serial_sequence('public.users', 'id'), c_users + 1, false);
    PERFORM setval(pg_get_serial_sequence('public.posts', 'id'), c_posts + 1, false);
    PERFORM setval(pg_get_serial_sequence('public.comments', 'id'), c_comments + 1, false);
    PERFORM setval(pg_get_serial_sequence('public.article_reads', 'id'), c_reads + 1, false);
    PERFORM setval(pg_get_serial_sequence('public.challenges', 'id'), c_challenges + 1, false);

    -- rebuild the dropped indexes, then re-add (and so validate) the foreign keys
    FOREACH stmt IN ARRAY coalesce(index_defs, '{}') LOOP
        EXECUTE stmt;
    END LOOP;
    FOREACH stmt IN ARRAY coalesce(fk_defs, '{}') LOOP
        EXECUTE stmt;
    END LOOP;

    ANALYZE public.users, public.posts, public.comments, public.article_reads,
            public.challenges, public.challenge_entries;

    RETURN QUERY VALUES
        ('users'::text, c_users),
        ('posts', c_posts),
        ('comments', c_comments),
        ('article_reads', c_reads),
        ('challenges', c_challenges),
        ('challenge_entries', c_entries);
END;
$fn$;
