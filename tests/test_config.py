"""plaudit.yaml: defaults, every setting, and the exact message of every error."""

from __future__ import annotations

from pathlib import Path

import pytest

from plaudit.errors import ConfigError
from plaudit.model.config import Config, EventSource, load_config
from plaudit.model.issuer import OpenBadges
from plaudit.model.webhooks import Endpoint, Webhooks

FULL = """\
rules: rules
schema: plaudit
user_id_type: bigint
timezone: UTC
statement_timeout: 60s
notify: {channel: plaudit_award, max_age: 2 days}
events:        # optional: capture app tables as events with triggers, no app code
  comment_created: {table: comments, on: insert, user: author_id, at: created_at}
"""


def load(tmp_path: Path, text: str) -> Config:
    (tmp_path / "plaudit.yaml").write_text(text, encoding="utf-8")
    return load_config(tmp_path)


def test_no_file_means_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config == Config(project_dir=tmp_path, rules_dir=tmp_path / "rules")
    assert (config.schema, config.user_id_type, config.timezone) == ("plaudit", "bigint", "UTC")
    assert (config.statement_timeout, config.notify_channel, config.notify_max_age) == (
        "60s",
        "plaudit_award",
        "2 days",
    )
    # a backfill reads all history, an incremental run a batch's users
    assert (config.timeout("backfill"), config.timeout("incremental")) == ("30min", "60s")
    assert config.events == ()


@pytest.mark.parametrize("text", ["", "# nothing set yet\n"], ids=["empty", "comments-only"])
def test_empty_file_means_defaults(tmp_path: Path, text: str) -> None:
    assert load(tmp_path, text) == Config(project_dir=tmp_path, rules_dir=tmp_path / "rules")


def test_design_example(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)
    assert config == Config(
        project_dir=tmp_path,
        rules_dir=tmp_path / "rules",
        events=(EventSource("comment_created", "comments", "insert", "author_id", "created_at"),),
    )


def test_every_setting(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "rules: badges\n"
        "schema: gamification\n"
        "user_id_type: uuid\n"
        "timezone: Europe/Paris\n"
        "statement_timeout: 250\n"
        "backfill_timeout: 2h\n"
        "notify: {channel: badges, max_age: 1 day 12 hours}\n"
        "events:\n"
        "  article_read: {table: app.reads, on: insert, user: reader_id}\n"
        "  profile_updated: {table: profiles, on: update, user: id, at: updated_at}\n",
    )
    assert config.rules_dir == tmp_path / "badges"
    assert (config.schema, config.user_id_type, config.timezone) == (
        "gamification",
        "uuid",
        "Europe/Paris",
    )
    assert config.statement_timeout == "250"  # a bare number: milliseconds, as in PostgreSQL
    assert config.backfill_timeout == "2h"
    assert (config.notify_channel, config.notify_max_age) == ("badges", "1 day 12 hours")
    assert config.events == (
        EventSource("article_read", "app.reads", "insert", "reader_id", None),
        EventSource("profile_updated", "profiles", "update", "id", "updated_at"),
    )


def test_partial_notify_keeps_the_other_default(tmp_path: Path) -> None:
    config = load(tmp_path, "notify: {max_age: 3 hours}\n")
    assert (config.notify_channel, config.notify_max_age) == ("plaudit_award", "3 hours")


P = "plaudit.yaml"
INVALID = [
    pytest.param(
        "- rules\n",
        [f"{P}:1: expected a mapping at the top level, got a list"],
        id="top-level-list",
    ),
    pytest.param(
        "schema: plaudit\nrules: a: b\n",
        [f"{P}:2: invalid YAML: mapping values are not allowed here"],
        id="yaml-syntax-error",
    ),
    pytest.param(
        "schema: a\nschema: b\n",
        [f"{P}:2: duplicate key 'schema' (first at line 1)"],
        id="duplicate-key",
    ),
    pytest.param("colour: red\n", [f"{P}:1: unknown key 'colour'"], id="unknown-key"),
    pytest.param(
        "shema: x\n",
        [f"{P}:1: unknown key 'shema' (did you mean 'schema'?)"],
        id="unknown-key-typo",
    ),
    pytest.param('rules: ""\n', [f"{P}:1: 'rules' must be a non-empty string"], id="rules-empty"),
    pytest.param(
        "schema: Plaudit\n", [f"{P}:1: 'schema' must match [a-z_][a-z0-9_]*"], id="schema-uppercase"
    ),
    pytest.param(
        "schema: my-schema\n", [f"{P}:1: 'schema' must match [a-z_][a-z0-9_]*"], id="schema-dash"
    ),
    pytest.param(
        "user_id_type: int8\n",
        [f"{P}:1: 'user_id_type' must be one of bigint, integer, text, uuid"],
        id="user-id-type",
    ),
    pytest.param(
        "timezone: Mars/Olympus\n",
        [f"{P}:1: unknown timezone 'Mars/Olympus'"],
        id="timezone-unknown",
    ),
    pytest.param("timezone: 5\n", [f"{P}:1: 'timezone' must be a string"], id="timezone-number"),
    pytest.param(
        "statement_timeout: 1 minute\n",
        [f"{P}:1: 'statement_timeout' must be a duration like 30s, 500ms, 5min or 1h"],
        id="statement-timeout",
    ),
    pytest.param(
        "backfill_timeout: forever\n",
        [f"{P}:1: 'backfill_timeout' must be a duration like 30s, 500ms, 5min or 1h"],
        id="backfill-timeout",
    ),
    *(
        pytest.param(
            f"{key}: {value}\n",
            [f"{P}:1: '{key}' must be more than 0 and at most 24h"],
            id=f"{key}-{value}",
        )
        for key in ("statement_timeout", "backfill_timeout")
        for value in ("0", "0s", "999999h", "86401s")
    ),
    pytest.param(
        "notify: loud\n", [f"{P}:1: 'notify' must be a mapping"], id="notify-not-a-mapping"
    ),
    pytest.param(
        "notify: {chanel: x}\n",
        [f"{P}:1: unknown key 'chanel' (did you mean 'channel'?)"],
        id="notify-typo",
    ),
    pytest.param(
        "notify: {channel: Bad-Channel}\n",
        [f"{P}:1: 'notify.channel' must match [a-z_][a-z0-9_]*"],
        id="notify-channel",
    ),
    pytest.param(
        "notify: {max_age: soon}\n",
        [f"{P}:1: 'notify.max_age' must be an interval like 2 days or 12 hours"],
        id="notify-max-age",
    ),
    pytest.param(
        "events: [comment_created]\n",
        [f"{P}:1: 'events' must be a mapping"],
        id="events-not-a-mapping",
    ),
    pytest.param(
        "events:\n  Comment-Created: {table: c, on: insert, user: u}\n",
        [f"{P}:2: event type 'Comment-Created' must match [a-z0-9_]+"],
        id="event-type",
    ),
    pytest.param(
        "events:\n  x: comments\n",
        [f"{P}:2: event 'x' must be a mapping like {{table: t, on: insert, user: c}}"],
        id="event-not-a-mapping",
    ),
    pytest.param(
        "events:\n  x: {}\n",
        [
            f"{P}:2: missing required key 'on'",
            f"{P}:2: missing required key 'table'",
            f"{P}:2: missing required key 'user'",
        ],
        id="event-missing-keys",
    ),
    pytest.param(
        "events:\n  x: {table: c, on: insert, user: u, when: t}\n",
        [f"{P}:2: unknown key 'when'"],
        id="event-unknown-key",
    ),
    pytest.param(
        "events:\n  x: {table: c, on: upsert, user: u}\n",
        [f"{P}:2: 'on' must be one of insert, update, delete"],
        id="event-on",
    ),
    pytest.param(
        "events:\n  x: {table: a.b.c, on: insert, user: u}\n",
        [f"{P}:2: 'table' must be a table name like comments or app.comments"],
        id="event-table-three-parts",
    ),
    pytest.param(
        "events:\n  x: {table: Comments, on: insert, user: u}\n",
        [f"{P}:2: 'table' must be a table name like comments or app.comments"],
        id="event-table-uppercase",
    ),
    pytest.param(
        "events:\n  x: {table: c, on: insert, user: author-id}\n",
        [f"{P}:2: 'user' must match [a-z_][a-z0-9_]*"],
        id="event-user",
    ),
    pytest.param(
        "events:\n  x: {table: c, on: insert, user: u, at: created at}\n",
        [f"{P}:2: 'at' must match [a-z_][a-z0-9_]*"],
        id="event-at",
    ),
    pytest.param(
        "events:\n  x:\n    table: c\n    on: delete\n    user: 7\n",
        [f"{P}:5: 'user' must match [a-z_][a-z0-9_]*"],
        id="block-event-points-at-the-value-line",
    ),
]


@pytest.mark.parametrize(("text", "expected"), INVALID)
def test_invalid_config(tmp_path: Path, text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    assert str(error.value) == "\n".join(expected)


def test_every_problem_in_one_error_in_line_order(tmp_path: Path) -> None:
    text = (
        "schema: Bad\n"
        "user_id_type: int8\n"
        "colour: red\n"
        "notify: {channel: ok, max_age: soon}\n"
        "events:\n"
        "  x: {table: c, on: upsert}\n"
    )
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    assert str(error.value).splitlines() == [
        "plaudit.yaml:1: 'schema' must match [a-z_][a-z0-9_]*",
        "plaudit.yaml:2: 'user_id_type' must be one of bigint, integer, text, uuid",
        "plaudit.yaml:3: unknown key 'colour'",
        "plaudit.yaml:4: 'notify.max_age' must be an interval like 2 days or 12 hours",
        "plaudit.yaml:6: 'on' must be one of insert, update, delete",
        "plaudit.yaml:6: missing required key 'user'",
    ]


def test_config_error_exits_with_2(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, "colour: red\n")
    assert error.value.exit_code == 2


def test_openbadges_section(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "openbadges:\n"
        "  issuer:\n"
        "    id: did:web:example.org\n"
        "    name: Example Community\n"
        "  subject: https://example.org/users/{user_id}\n"
        "  achievement: https://example.org/badges/{badge}#{level}\n"
        "  image_base: https://example.org/icons/\n",
    )
    assert config.openbadges == OpenBadges(
        "did:web:example.org", "Example Community", None, "https://example.org/users/{user_id}",
        "https://example.org/badges/{badge}#{level}", "https://example.org/icons/")
    badges = config.openbadges
    assert badges.subject_id("a b/7") == "https://example.org/users/a%20b%2F7"
    assert badges.achievement_id("helper", "gold") == "https://example.org/badges/helper#gold"
    assert [badges.image(icon) for icon in ("gold.png", "x y.svg", "data:image/png;base64,AA",
                                            None)] == [
        "https://example.org/icons/gold.png", "https://example.org/icons/x%20y.svg",
        "data:image/png;base64,AA", None]
    assert load(tmp_path, "timezone: UTC\n").openbadges is None


IRI = "must be an absolute IRI such as https://example.org/... or did:web:example.org"
OPENBADGES_INVALID = [
    pytest.param("openbadges: yes\n", [f"{P}:1: 'openbadges' must be a mapping"], id="scalar"),
    pytest.param(
        "openbadges:\n  subject: https://x.org/{user_id}\n",
        [f"{P}:2: missing required key 'issuer'"],
        id="no-issuer",
    ),
    pytest.param(
        "openbadges:\n  issuer: {id: example.org, name: X, url: www.x.org}\n"
        "  subject: https://x.org/{user_id}\n",
        [f"{P}:2: 'openbadges.issuer.id' {IRI}", f"{P}:2: 'openbadges.issuer.url' {IRI}"],
        id="relative-iris",
    ),
    pytest.param(
        "openbadges:\n  issuer: {id: https://x.org}\n  subject: https://x.org/users/\n",
        [f"{P}:2: missing required key 'name'",
         f"{P}:3: 'openbadges.subject' must be an absolute IRI holding {{user_id}}, like "
         "https://example.org/users/{user_id}"],
        id="no-name-no-placeholder",
    ),
    pytest.param(
        "openbadges:\n  issuer: {id: https://x.org, name: X}\n"
        "  subject: https://x.org/{user_id}\n  achievement: https://x.org/{badge}\n"
        "  imagebase: https://x.org/\n",
        [f"{P}:4: 'openbadges.achievement' must be an absolute IRI holding {{badge}} and "
         "{level}, like https://example.org/badges/{badge}/{level}",
         f"{P}:5: unknown key 'imagebase' (did you mean 'image_base'?)"],
        id="achievement-without-level",
    ),
]


@pytest.mark.parametrize(("text", "expected"), OPENBADGES_INVALID)
def test_invalid_openbadges(tmp_path: Path, text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    assert str(error.value) == "\n".join(expected)


WEBHOOKS = """\
webhooks:
  endpoints:
    crm:
      url: https://crm.example.org/hooks/plaudit
      secret_env: PLAUDIT_WEBHOOK_SECRET
      badges: [first_post, commentator]
      tags: [community]
    chat: {url: "http://127.0.0.1:8000/hook", secret: dev-only}
  timeout: 5s
  coalesce: 2s
  max_per_hour: 0
  retry: {first: 500ms, max: 10min, give_up_after: 1 day}
retention: {outbox: 2 days}
"""


def test_webhooks_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(tmp_path, WEBHOOKS)
    assert config.retention_outbox == "2 days"
    assert config.webhooks == Webhooks(
        endpoints=(
            Endpoint("crm", "https://crm.example.org/hooks/plaudit", None,
                     "PLAUDIT_WEBHOOK_SECRET", ("first_post", "commentator"), ("community",), 3),
            Endpoint("chat", "http://127.0.0.1:8000/hook", "dev-only", None, (), (), 8),
        ),
        timeout="5s", coalesce="2s", max_per_hour=0, retry_first="500ms", retry_max="10min",
        give_up_after="1 day")
    crm, chat = config.webhooks.endpoints
    assert chat.key() == b"dev-only"
    monkeypatch.setenv("PLAUDIT_WEBHOOK_SECRET", "from-env")
    assert crm.key() == b"from-env"  # read when delivering, not when loading
    monkeypatch.delenv("PLAUDIT_WEBHOOK_SECRET")
    with pytest.raises(ConfigError, match=r"^plaudit.yaml:3: webhook crm: the environment "
                       "variable PLAUDIT_WEBHOOK_SECRET holding its secret is not set$"):
        crm.key()
    # the defaults
    minimal = load(tmp_path, "webhooks: {endpoints: {a: {url: 'https://a.example', secret: x}}}\n")
    assert minimal.webhooks == Webhooks((Endpoint("a", "https://a.example", "x", None, line=1),))
    assert (minimal.webhooks.coalesce, minimal.webhooks.max_per_hour,
            minimal.webhooks.give_up_after) == ("5s", 30, "3 days")


W = "webhooks:\n  endpoints:\n"
WEBHOOKS_INVALID = [
    pytest.param("webhooks: [a]\n", [
        f"{P}:1: 'webhooks' must be a mapping like {{endpoints: {{name: {{url: ...}}}}}}"],
        id="not-a-mapping"),
    pytest.param("webhooks: {timeout: 5s}\n", [f"{P}:1: missing required key 'endpoints'"],
                 id="no-endpoints"),
    pytest.param(W + "    Bad: {url: 'https://a.example', secret: x}\n",
                 [f"{P}:3: webhook name 'Bad' must match [a-z0-9_]+"], id="name"),
    pytest.param(W + "    a: https://a.example\n", [
        f"{P}:3: webhooks.endpoints.a must be a mapping like {{url: https://..., "
        "secret_env: PLAUDIT_WEBHOOK_SECRET}"], id="endpoint-not-a-mapping"),
    pytest.param(W + "    a: {url: 'ftp://a.example', secret: x}\n", [
        f"{P}:3: 'webhooks.endpoints.a.url' must be an http:// or https:// URL"], id="url"),
    pytest.param(W + "    a: {url: 'https://a.example'}\n", [
        f"{P}:3: webhooks.endpoints.a needs a secret to sign with: secret_env: NAME (an "
        "environment variable) or secret: ..."], id="no-secret"),
    pytest.param(W + "    a: {url: 'https://a.example', secret: x, secret_env: Y}\n", [
        f"{P}:3: webhooks.endpoints.a: give secret or secret_env, not both"], id="two-secrets"),
    pytest.param(W + "    a: {url: 'https://a.example', secret_env: 'NOT-A-NAME'}\n", [
        f"{P}:3: 'webhooks.endpoints.a.secret_env' must match [A-Za-z_][A-Za-z0-9_]*"],
        id="secret-env"),
    pytest.param(W + "    a: {url: 'https://a.example', secret: x, badges: [Big]}\n", [
        f"{P}:3: webhooks.endpoints.a.badges: 'Big' must match [a-z0-9_]+"], id="badge"),
    pytest.param(W + "    a: {url: 'https://a.example', secret: x, tag: [b]}\n", [
        f"{P}:3: unknown key 'tag' (did you mean 'tags'?)"], id="endpoint-typo"),
    pytest.param("webhooks:\n  endpoints: {}\n  timeout: 0s\n", [
        f"{P}:3: 'webhooks.timeout' must be more than 0"], id="timeout-0"),
    pytest.param("webhooks:\n  endpoints: {}\n  coalesce: soon\n", [
        f"{P}:3: 'webhooks.coalesce' must be a duration like 500ms, 5s, 10min or 1h"],
        id="coalesce"),
    pytest.param("webhooks:\n  endpoints: {}\n  max_per_hour: -1\n", [
        f"{P}:3: 'webhooks.max_per_hour' must be a whole number, 0 for no limit"],
        id="max-per-hour"),
    pytest.param("webhooks:\n  endpoints: {}\n  retry: {first: 2h, max: 1h}\n", [
        f"{P}:3: webhooks.retry.first must not be longer than webhooks.retry.max"],
        id="retry-first-above-max"),
    pytest.param("webhooks:\n  endpoints: {}\n  retry: {give_up_after: never}\n", [
        f"{P}:3: 'webhooks.retry.give_up_after' must be an interval like 3 days or 12 hours"],
        id="give-up"),
    pytest.param("retention: {outbox: forever}\n", [
        f"{P}:1: 'retention.outbox' must be an interval like 30 days or 12 hours"],
        id="retention-outbox"),
]


@pytest.mark.parametrize(("text", "expected"), WEBHOOKS_INVALID)
def test_invalid_webhooks(tmp_path: Path, text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert str(err.value).splitlines() == expected
