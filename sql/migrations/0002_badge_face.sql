-- Migration 0002: the badge's face (issue 14): how a badge shows in a trophy case, beside
-- what earns it. Synced from the rule files by `deploy` (plaudit.deploy_badge) and from
-- plaudit.yaml's `categories:` (plaudit.configure); read by plaudit.trophy_case.
-- Rendered with {{ schema }} like every migration; applied once.

ALTER TABLE {{ schema }}.badge
    -- one of plaudit.yaml's categories (plaudit.category), when the rule names one
    ADD COLUMN category text,
    -- a secret badge is listed only once earned, and shows no progress before
    ADD COLUMN secret boolean NOT NULL DEFAULT false,
    -- the rule's `order:`, its place within its category; NULL: after those with one
    ADD COLUMN sort_order int,
    -- {locale: {name, description, levels: {key: {name, description, hint}}}}, locales
    -- lower-case (plaudit.localized)
    ADD COLUMN i18n jsonb NOT NULL DEFAULT '{}';

ALTER TABLE {{ schema }}.badge_level
    ADD COLUMN description text,  -- what the holder did
    ADD COLUMN hint text;         -- how to earn it, shown while it is the next level

-- The trophy case's sections, in plaudit.yaml's order; i18n: {locale: name}.
CREATE TABLE {{ schema }}.category (
    key text PRIMARY KEY,
    position int NOT NULL,
    name text NOT NULL,
    i18n jsonb NOT NULL DEFAULT '{}'
);
