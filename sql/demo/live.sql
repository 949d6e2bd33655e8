-- Live activity for the incremental part of `plaudit demo`. Plain SQL, re-runnable
-- (CREATE OR REPLACE), PostgreSQL 15.
--
--   SELECT * FROM public.demo_live_activity();   -- one round: about 18 new rows, now()
--
-- Each round writes to the demo tables as the app would; the triggers that `plaudit deploy`
-- installs (plaudit.yaml `events:`) turn the rows into events. To make badges happen, most
-- rows come from users just short of a level: a few comments short of 10 or 100 comments,
-- articles a few reads short of 100 or 1000 reads, users without a first post. Not
-- deterministic: random() picks the users and now() dates the rows.

CREATE OR REPLACE FUNCTION public.demo_live_activity()
RETURNS TABLE (table_name text, row_count bigint)
LANGUAGE plpgsql
VOLATILE
AS $fn$
DECLARE
    n_users constant bigint := (SELECT count(*) FROM public.users);
    newest_post constant bigint := (SELECT max(id) FROM public.posts);
BEGIN
    -- two users 1 to 3 comments short of a Commentator level write three comments each, and
    -- four random users one each
    RETURN QUERY
    WITH near AS (
        SELECT c.author_id
        FROM public.comments AS c
        GROUP BY c.author_id
        HAVING count(*) BETWEEN 7 AND 9 OR count(*) BETWEEN 97 AND 99
        ORDER BY random()
        LIMIT 2
    ),
    authors AS (
        SELECT near.author_id FROM near CROSS JOIN generate_series(1, 3) AS g
        UNION ALL
        SELECT 1 + floor(random() * n_users)::bigint FROM generate_series(1, 4) AS g
    ),
    inserted AS (
        INSERT INTO public.comments (post_id, author_id, body, created_at)
        SELECT newest_post, a.author_id, 'live comment', now() FROM authors AS a
        RETURNING 1
    )
    SELECT 'comments'::text, count(*) FROM inserted;

    -- six readers read an article whose author is 1 to 6 reads short of Popular Author
    RETURN QUERY
    WITH near AS (
        SELECT p.author_id, max(p.id) AS post_id
        FROM public.article_reads AS r
        JOIN public.posts AS p ON p.id = r.post_id
        WHERE p.kind = 'article'
        GROUP BY p.author_id
        HAVING count(*) BETWEEN 94 AND 99 OR count(*) BETWEEN 994 AND 999
        ORDER BY random()
        LIMIT 1
    ),
    inserted AS (
        INSERT INTO public.article_reads (post_id, reader_id, read_at)
        SELECT near.post_id, 1 + floor(random() * n_users)::bigint, now()
        FROM near CROSS JOIN generate_series(1, 6) AS g
        RETURNING 1
    )
    SELECT 'article_reads'::text, count(*) FROM inserted;

    -- two users who never posted write their first article
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO public.posts (author_id, kind, title, created_at)
        SELECT u.id, 'article', 'Hello, world', now()
        FROM public.users AS u
        WHERE NOT EXISTS (SELECT FROM public.posts AS p WHERE p.author_id = u.id)
        ORDER BY random()
        LIMIT 2
        RETURNING 1
    )
    SELECT 'posts'::text, count(*) FROM inserted;
END;
$fn$;
