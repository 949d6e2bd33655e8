-- Benchmark helpers for the demo app (sql/demo/), installed by bench/run.py in the benchmark
-- database only. Re-runnable (CREATE OR REPLACE). Rendered with Jinja: {{ schema }} is the
-- plaudit schema.
--
-- Events are described the way plaudit.yaml `events:` captures them: for each source
-- {name, table, user, at}, a row of `table` is an event of type `name` by `user` at `at`,
-- with the whole row as its payload (what plaudit.capture_event() enqueues).

-- How many events the history holds, per type: the rows of each source table.
CREATE OR REPLACE FUNCTION public.bench_history_counts(p_sources jsonb)
RETURNS TABLE (type text, events bigint)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    s jsonb;
BEGIN
    FOR s IN SELECT x FROM jsonb_array_elements(p_sources) AS x LOOP
        type := s ->> 'name';
        EXECUTE format('SELECT count(*) FROM %s', (s ->> 'table')::regclass) INTO events;
        RETURN NEXT;
    END LOOP;
END;
$fn$;

-- A uniform sample of past events: every row of every source is kept with probability
-- p_fraction (Bernoulli, repeatable for a seed), so each type appears in proportion to its
-- share of the history. Unordered; the caller puts it in time order.
CREATE OR REPLACE FUNCTION public.bench_history_sample(
    p_sources jsonb, p_fraction double precision, p_seed double precision
) RETURNS TABLE (type text, user_id bigint, occurred_at timestamptz, payload jsonb)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    s jsonb;
BEGIN
    FOR s IN SELECT x FROM jsonb_array_elements(p_sources) AS x LOOP
        RETURN QUERY EXECUTE format(
            'SELECT %L::text, r.%I::bigint, r.%I::timestamptz, to_jsonb(r) '
            'FROM %s AS r TABLESAMPLE BERNOULLI ($1) REPEATABLE ($2)',
            s ->> 'name', s ->> 'user', s ->> 'at', (s ->> 'table')::regclass)
        USING least(100, 100 * p_fraction), p_seed;
    END LOOP;
END;
$fn$;

-- New activity "from now on": p_n rows split like the generator's history (about 55 : 8 :
-- 30 : 7 comments, posts, article reads, challenge entries), users skewed the same way (low
-- ids are the heavy users), stamped one second apart from p_start. Plain INSERTs into the
-- demo tables, so the capture triggers that `plaudit deploy` installed enqueue one event per
-- row, in the same transaction. An entry a user already has in a challenge is skipped.
-- Returns the rows inserted.
CREATE OR REPLACE FUNCTION public.bench_new_activity(
    p_n int, p_start timestamptz, p_seed double precision
) RETURNS int
LANGUAGE plpgsql AS $fn$
DECLARE
    n_users bigint := (SELECT max(id) FROM public.users);
    n_posts bigint := (SELECT max(id) FROM public.posts);
    running bigint[] := ARRAY(SELECT id FROM public.challenges
                              WHERE ends_at > p_start ORDER BY id);
    inserted int;
BEGIN
    PERFORM setseed(p_seed);
    WITH draw AS MATERIALIZED (
        SELECT g, p_start + g * interval '1 second' AS at, random() AS kind,
               random() AS r_user, random() AS r_other, random() AS r_flag
        FROM generate_series(1, p_n) AS g
    ),
    comments AS (
        INSERT INTO public.comments (post_id, author_id, body, created_at)
        SELECT floor(n_posts * d.r_other ^ 2)::bigint + 1, floor(n_users * d.r_user ^ 4)::bigint + 1,
               'bench comment ' || d.g, d.at
        FROM draw AS d
        WHERE d.kind < 0.55
        RETURNING 1
    ),
    posts AS (
        INSERT INTO public.posts (author_id, kind, title, created_at)
        SELECT floor(n_users * d.r_user ^ 3)::bigint + 1,
               CASE WHEN d.r_flag < 0.7 THEN 'article' ELSE 'question' END,
               'Bench post ' || d.g, d.at
        FROM draw AS d
        WHERE d.kind >= 0.55 AND d.kind < 0.63
        RETURNING 1
    ),
    reads AS (
        INSERT INTO public.article_reads (post_id, reader_id, read_at)
        SELECT a.id, floor(n_users * d.r_user ^ 3)::bigint + 1, d.at
        FROM draw AS d
        -- the oldest articles are read most: the first article at or after a skewed post id
        CROSS JOIN LATERAL (
            SELECT p.id FROM public.posts AS p
            WHERE p.kind = 'article' AND p.id >= floor(n_posts * d.r_other ^ 4)::bigint + 1
            ORDER BY p.id
            LIMIT 1
        ) AS a
        WHERE d.kind >= 0.63 AND d.kind < 0.93
        RETURNING 1
    ),
    entries AS (
        INSERT INTO public.challenge_entries (challenge_id, user_id, score, submitted_at)
        SELECT DISTINCT ON (1, 2)
               running[1 + floor(cardinality(running) * d.r_other)::int],
               floor(n_users * d.r_user ^ 2)::bigint + 1,
               round((100 * d.r_flag)::numeric, 1), d.at
        FROM draw AS d
        WHERE d.kind >= 0.93 AND cardinality(running) > 0
        ORDER BY 1, 2, d.g
        ON CONFLICT (challenge_id, user_id) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM comments) + (SELECT count(*) FROM posts)
           + (SELECT count(*) FROM reads) + (SELECT count(*) FROM entries)
    INTO inserted;
    RETURN inserted;
END;
$fn$;

-- The baseline of an incremental run: the same events in the batch table, then each rule
-- they trigger as its bare analyst query for the batch's users (bench/baseline.sql), with
-- none of plaudit's work. p_rules: [{triggers: [type], sql: text}]. Returns the qualifying
-- users found, summed over the rules.
CREATE OR REPLACE FUNCTION public.bench_bare_batch(p_events jsonb, p_rules jsonb)
RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    types text[] := ARRAY(SELECT DISTINCT e ->> 'type' FROM jsonb_array_elements(p_events) AS e);
    r jsonb;
    found bigint;
    total bigint := 0;
BEGIN
    PERFORM {{ schema }}.batch_fill(p_events);
    FOR r IN SELECT x FROM jsonb_array_elements(p_rules) AS x LOOP
        CONTINUE WHEN NOT ARRAY(SELECT jsonb_array_elements_text(r -> 'triggers')) && types;
        -- a rule's params are bound as NULL, as in a run without --param
        EXECUTE r ->> 'sql' INTO found
            USING NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text,
                  NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text,
                  NULL::text, NULL::text, NULL::text, NULL::text;
        total := total + found;
    END LOOP;
    DELETE FROM pg_temp.plaudit_batch;
    RETURN total;
END;
$fn$;
