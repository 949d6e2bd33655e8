-- The demo app's tables on a Citus cluster (`plaudit demo --citus`, tests/test_citus.py):
-- run after the data is generated (demo_generate() needs joins Citus cannot run on distributed
-- tables: random posts for random authors), it moves the rows to the shards. Each activity table is distributed by
-- its user column, co-located with users and with plaudit's grants (sql/citus/distribute.sql),
-- so that a rule counting a user's own rows runs on the workers; challenges, a few rows read
-- by every shard, is a reference table.
--
-- Citus requires each unique key of a distributed table to include its distribution column,
-- and foreign keys between distributed tables to be on it: the surrogate keys become
-- (user, id), and the references to posts (by post id alone) and to challenges go. Re-runnable.
DO $citus$
BEGIN
    IF EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'public.users'::regclass) THEN
        RETURN;
    END IF;
    ALTER TABLE public.comments DROP CONSTRAINT IF EXISTS comments_post_id_fkey;
    ALTER TABLE public.article_reads DROP CONSTRAINT IF EXISTS article_reads_post_id_fkey;
    -- and the reference to challenges: a table referencing a reference table before it is
    -- distributed becomes a Citus local table (which cannot keep its identity column), and
    -- after, each later statement of the generator's transaction must run over one
    -- connection per node (Citus's rule for foreign keys to reference tables)
    ALTER TABLE public.challenge_entries
        DROP CONSTRAINT IF EXISTS challenge_entries_challenge_id_fkey;
    ALTER TABLE public.posts DROP CONSTRAINT posts_pkey,
        ADD PRIMARY KEY (author_id, id);
    ALTER TABLE public.comments DROP CONSTRAINT comments_pkey,
        ADD PRIMARY KEY (author_id, id);
    ALTER TABLE public.article_reads DROP CONSTRAINT article_reads_pkey,
        ADD PRIMARY KEY (reader_id, id);
    PERFORM create_distributed_table('public.users', 'id');
    PERFORM create_distributed_table('public.posts', 'author_id', colocate_with => 'public.users');
    PERFORM create_distributed_table('public.comments', 'author_id',
                                     colocate_with => 'public.users');
    PERFORM create_distributed_table('public.article_reads', 'reader_id',
                                     colocate_with => 'public.users');
    PERFORM create_distributed_table('public.challenge_entries', 'user_id',
                                     colocate_with => 'public.users');
    PERFORM create_reference_table('public.challenges');
    -- the rows were copied to the shards: the coordinator's own copies go
    PERFORM truncate_local_data_after_distributing_table(t)
    FROM unnest(ARRAY['public.users', 'public.posts', 'public.comments', 'public.article_reads',
                      'public.challenge_entries', 'public.challenges']::regclass[]) AS t;
END
$citus$;
