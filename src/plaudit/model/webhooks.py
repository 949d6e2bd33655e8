"""plaudit.yaml's `webhooks:` section: where `plaudit deliver` posts the outbox, and how.

    webhooks:
      endpoints:
        crm:
          url: https://crm.example.org/hooks/plaudit
          secret_env: PLAUDIT_WEBHOOK_SECRET   # or secret: ... (then it is in the file)
          badges: [first_post]                 # optional: these badges,
          tags: [community]                    #   and the badges with these tags
      timeout: 10s          # per request
      coalesce: 5s          # a user's notices within this window go in one message
      max_per_hour: 30      # messages per user and endpoint; the rest wait, then fold in
      retry: {first: 1s, max: 1h, give_up_after: 3 days}

Secrets are read from the environment when `plaudit deliver` starts, never by validate or
deploy, and never stored in the database.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from plaudit.errors import ConfigError
from plaudit.model.yamlsource import Fields, LocatedDict

WEBHOOKS_KEYS = ("endpoints", "timeout", "coalesce", "max_per_hour", "retry")
ENDPOINT_KEYS = ("url", "secret", "secret_env", "badges", "tags")
RETRY_KEYS = ("first", "max", "give_up_after")
_NAME = re.compile(r"[a-z0-9_]+")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECONDS = {None: 0.001, "ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+)\s*(ms|s|min|h)?")
_DURATION_REQUIREMENT = "must be a duration like 500ms, 5s, 10min or 1h"
_UNIT = r"(s|secs?|seconds?|min|mins|minutes?|h|hours?|days?|weeks?)"
_INTERVAL = re.compile(rf"(\d+\s*{_UNIT}\s*)+")


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    secret: str | None  # given in plaudit.yaml
    secret_env: str | None  # else the environment variable holding it
    badges: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    line: int = 1  # plaudit.yaml line of the endpoint, for messages

    def key(self) -> bytes:
        """The signing secret; a ConfigError when its environment variable is not set."""
        if self.secret is not None:
            return self.secret.encode()
        assert self.secret_env is not None
        value = os.environ.get(self.secret_env)
        if not value:
            raise ConfigError(
                f"plaudit.yaml:{self.line}: webhook {self.name}: the environment variable "
                f"{self.secret_env} holding its secret is not set")
        return value.encode()


@dataclass(frozen=True)
class Webhooks:
    endpoints: tuple[Endpoint, ...]
    timeout: str = "10s"
    coalesce: str = "5s"
    max_per_hour: int = 30  # 0: no limit
    retry_first: str = "1s"
    retry_max: str = "1h"
    give_up_after: str = "3 days"

    def endpoint(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)

    def as_json(self) -> list[dict[str, Any]]:
        """What deploy syncs into plaudit.webhook (no secret)."""
        return [{"name": e.name, "url": e.url, "badges": list(e.badges), "tags": list(e.tags),
                 "coalesce": self.coalesce} for e in self.endpoints]


def seconds(duration: str) -> float:
    """The length of a duration accepted here (500ms, 5s, 10min, 1h; a bare number is ms)."""
    match = _DURATION.fullmatch(duration.strip())
    assert match is not None
    return int(match[1]) * _SECONDS[match[2]]


def _is_duration(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and (
        _DURATION.fullmatch(str(value).strip()) is not None)


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in value


def _names(fields: Fields, spec: LocatedDict, key: str, label: str) -> tuple[str, ...]:
    items = fields.field(spec, key, lambda v: isinstance(v, list), "must be a list",
                         label=label)
    names: list[str] = []
    for index, item in enumerate(items or ()):
        if isinstance(item, str) and _NAME.fullmatch(item):
            names.append(item)
        else:
            fields.problem(items.item_line(index), f"{label}: {item!r} must match [a-z0-9_]+")
    return tuple(names)


def _endpoint(fields: Fields, name: str, spec: Any, line: int) -> Endpoint | None:
    label = f"webhooks.endpoints.{name}"
    if not isinstance(spec, LocatedDict):
        fields.problem(line, f"{label} must be a mapping like {{url: https://..., secret_env: "
                             "PLAUDIT_WEBHOOK_SECRET}")
        return None
    fields.check_keys(spec, ENDPOINT_KEYS)
    url = fields.field(spec, "url", _is_url, "must be an http:// or https:// URL",
                       required=True, label=f"{label}.url")
    secret = fields.text(spec, "secret", label=f"{label}.secret")
    secret_env = fields.matching(spec, "secret_env", _ENV, label=f"{label}.secret_env")
    if "secret" in spec and "secret_env" in spec:
        fields.problem(spec.key_line("secret"), f"{label}: give secret or secret_env, not both")
    elif "secret" not in spec and "secret_env" not in spec:
        fields.problem(spec.line, f"{label} needs a secret to sign with: secret_env: NAME (an "
                                  "environment variable) or secret: ...")
    badges = _names(fields, spec, "badges", f"{label}.badges")
    tags = _names(fields, spec, "tags", f"{label}.tags")
    if url is None or (secret is None and secret_env is None):
        return None
    return Endpoint(name, url, secret, secret_env, badges, tags, line)


def read_webhooks(fields: Fields, document: LocatedDict) -> Webhooks | None:
    """The `webhooks:` section, or None without one. Problems go to `fields`, at their lines."""
    section = fields.field(document, "webhooks", lambda v: isinstance(v, dict),
                           "must be a mapping like {endpoints: {name: {url: ...}}}")
    if section is None:
        return None
    fields.check_keys(section, WEBHOOKS_KEYS)
    specs = fields.field(section, "endpoints", lambda v: isinstance(v, dict),
                         "must be a mapping of name to {url, secret_env, badges, tags}",
                         required=True, label="webhooks.endpoints")
    endpoints: list[Endpoint] = []
    for name, spec in (specs or {}).items():
        if not _NAME.fullmatch(name):
            fields.problem(specs.key_line(name), f"webhook name '{name}' must match [a-z0-9_]+")
            continue
        endpoint = _endpoint(fields, name, spec, specs.key_line(name))
        if endpoint is not None:
            endpoints.append(endpoint)
    defaults = Webhooks(())
    timeout = _duration(fields, section, "timeout", defaults.timeout, positive=True)
    coalesce = _duration(fields, section, "coalesce", defaults.coalesce)
    per_hour = fields.field(
        section, "max_per_hour", lambda v: isinstance(v, int) and not isinstance(v, bool)
        and v >= 0, "must be a whole number, 0 for no limit", default=defaults.max_per_hour,
        label="webhooks.max_per_hour")
    first, most, give_up = defaults.retry_first, defaults.retry_max, defaults.give_up_after
    retry = fields.field(section, "retry", lambda v: isinstance(v, dict),
                         "must be a mapping like {first: 1s, max: 1h, give_up_after: 3 days}",
                         label="webhooks.retry")
    if retry is not None:
        fields.check_keys(retry, RETRY_KEYS)
        first = _duration(fields, retry, "first", first, positive=True, prefix="webhooks.retry")
        most = _duration(fields, retry, "max", most, positive=True, prefix="webhooks.retry")
        give_up = fields.field(
            retry, "give_up_after", lambda v: isinstance(v, str) and bool(
                _INTERVAL.fullmatch(v.strip())),
            "must be an interval like 3 days or 12 hours", default=give_up,
            label="webhooks.retry.give_up_after").strip()
        if seconds(first) > seconds(most):
            fields.problem(retry.value_line("first"),
                           "webhooks.retry.first must not be longer than webhooks.retry.max")
    return Webhooks(tuple(endpoints), timeout, coalesce, per_hour, first, most, give_up)


def _duration(fields: Fields, mapping: LocatedDict, key: str, default: str, *,
              positive: bool = False, prefix: str = "webhooks") -> str:
    value = fields.field(mapping, key, _is_duration, _DURATION_REQUIREMENT, default=default,
                         label=f"{prefix}.{key}")
    text = str(value).strip()
    if positive and seconds(text) <= 0:
        fields.problem(mapping.value_line(key), f"'{prefix}.{key}' must be more than 0")
        return default
    return text
