-- The user id type is fixed when the tables are created (sql/migrations/0001_baseline.sql
-- records it in meta): a different configured type would need a data migration, not an
-- upgrade. Checked at every init, after the migrations and before the functions, which are
-- rendered with the configured type. Rendered with {{ schema }} and {{ user_id_type }}.
DO $$
DECLARE
    v_created text := (SELECT value FROM {{ schema }}.meta WHERE key = 'user_id_type');
BEGIN
    IF v_created <> '{{ user_id_type }}' THEN
        RAISE EXCEPTION 'plaudit.yaml says user_id_type: {{ user_id_type }}, but schema {{ schema }} was created with %', v_created
            USING HINT = 'changing the user id type needs a data migration; set user_id_type back to ' || v_created;
    END IF;
END
$$;
