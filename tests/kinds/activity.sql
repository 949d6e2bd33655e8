-- The app table the kind rules of tests/kinds/rules/ read; each case gives its rows.
CREATE TABLE activity (
    user_id bigint,
    occurred_at timestamptz,  -- count, sum, growth, streak
    amount numeric,           -- sum, growth
    value numeric,            -- gauge
    achieved_at timestamptz,  -- gauge, award
    level text,               -- award
    scope text,
    meta jsonb                -- award
);
