"""`plaudit report`: the static HTML report, written into one folder that opens from disk or
publishes as it is (docs/operations.md, "Report").

    DIR/index.html           totals, grants per week, the leaderboards
    DIR/badges.html          the catalogue by category: levels, holders, rarity
    DIR/users/<id>.html      a user's trophy case, recent grants and ranks
    DIR/style.css, DIR/icons/

Pages are Jinja templates (report/templates/), autoescaped; charts are inline SVG drawn in
Python (charts.py). Nothing runs in the browser and nothing is fetched but the icons that
rules give as URLs.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from plaudit.errors import ConfigError
from plaudit.report.charts import share_bar, weekly_chart
from plaudit.report.data import UserChoice, overview, page_users, progress_unit, snapshot, user_page
from plaudit.report.icons import Icons, is_url
from plaudit.runtime.engine import Engine

GENERATOR = "plaudit report"  # <meta name="generator">: how a folder is known as a report
# What a report writes, and a new report replaces; anything else in the folder is left.
OWNED = ("index.html", "badges.html", "style.css", "users", "icons")
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,100}$")


@dataclass(frozen=True)
class Written:
    folder: Path
    users: int  # user pages
    missing_icons: list[str]  # icon paths without a file: drawn as defaults
    seconds: float


def user_file(user_id: str) -> str:
    """A user page's name under users/: the id where it is a plain file name, else a hash
    (a text id may hold any character)."""
    if _PLAIN_ID.match(user_id):
        return f"{user_id}.html"
    return f"u-{hashlib.sha256(user_id.encode()).hexdigest()[:16]}.html"


def write_report(
    engine: Engine,
    out: Path,
    *,
    locale: str | None = None,
    users: UserChoice = "top",
    extra: Sequence[str] = (),
    now: datetime | None = None,
    on_user: Callable[[int, int], None] | None = None,
) -> Written:
    """Write the report of the database into `out` (created, or a previous report's folder,
    whose pages it replaces). `users`: which users get a page besides `extra`; `on_user`
    hears (pages written, pages to write)."""
    started = time.monotonic()
    moment = now or datetime.now(UTC)
    prepare(out)
    icons = Icons(engine.config.project_dir)
    env = environment(engine.config.timezone)
    with snapshot(engine.db):
        data = overview(engine, icons, locale, moment)
        chosen = page_users(engine, data.boards, users, extra)
        shared: dict[str, Any] = {"data": data, "pages": set(chosen), "locale": locale}
        render(env, "index.html", out / "index.html", root="", **shared)
        render(env, "badges.html", out / "badges.html", root="", **shared)
        (out / "users").mkdir(exist_ok=True)
        for done, user_id in enumerate(chosen, 1):
            page = user_page(engine, user_id, locale, moment)
            render(env, "user.html", out / "users" / user_file(user_id), root="../", page=page,
                   **shared)
            if on_user:
                on_user(done, len(chosen))
    icons.write(out)
    (out / "style.css").write_text(
        files("plaudit.report").joinpath("templates/style.css").read_text(encoding="utf-8"),
        encoding="utf-8")
    return Written(out, len(chosen), icons.missing, time.monotonic() - started)


def prepare(out: Path) -> None:
    """An empty or new folder, or a previous report's (its pages go): never a folder of
    something else, whose files a report would mix with or overwrite."""
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file, not a folder")
        if out.is_dir() and any(out.iterdir()):
            index = out / "index.html"
            if not index.is_file() or f'content="{GENERATOR}' not in index.read_text(
                    encoding="utf-8", errors="replace")[:2000]:
                raise ConfigError(f"--out {out} is a folder that holds other files than a "
                                  "plaudit report: give an empty or a new folder")
            for name in OWNED:
                path = out / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None


def render(env: jinja2.Environment, template: str, path: Path, **context: Any) -> None:
    path.write_text(env.get_template(template).render(**context), encoding="utf-8")


def environment(timezone: str) -> jinja2.Environment:
    """HTML templates, autoescaped, with the report's number and time formats."""
    zone = ZoneInfo(timezone)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("plaudit.report", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    env.filters.update(
        number=lambda n: f"{n:,}",
        amount=_amount,
        when=lambda t: "" if t is None else t.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        day=lambda t: t.astimezone(zone).strftime("%Y-%m-%d"),
        percent=_percent,
    )
    env.globals.update(weekly_chart=weekly_chart, share_bar=share_bar, user_file=user_file,
                       icon_src=lambda src, root: src if is_url(src) else root + src,
                       progress_unit=progress_unit, generator=GENERATOR)
    return env


def _amount(value: Decimal | int | None) -> str:
    """A progress value or threshold as `plaudit user` shows it: exact, no trailing zeros."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        text = f"{value.normalize():f}"
        whole, dot, fraction = text.partition(".")
        return f"{int(whole):,}{dot}{fraction}" if whole.lstrip("-").isdigit() else text
    return f"{value:,}"


def _percent(value: float | None) -> str:
    """A rarity: 62.5%, 0.4%; under 0.1% but held, <0.1%."""
    if value is None:
        return "–"
    if 0 < value < 0.1:
        return "<0.1%"
    return f"{value:.1f}%"
