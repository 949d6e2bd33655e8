"""The HTML report in a real browser (issue 15, third part): headless Chromium from Debian's
packages, driven by Selenium through the packaged chromedriver (tests/browser.py).

One report of the demo community (bundled rules, small size, one icon from a project file
and one missing) is loaded page by page: no console message, no broken image, every link
and fragment resolving inside the folder; the catalogue's holders and rarity, the
leaderboards and the user pages read from the DOM equal plain SQL over user_badge; no page
scrolls sideways at phone width; axe-core finds no WCAG 2 A/AA violation (contrast, alt
texts, headings, landmarks, lang); screenshots at desktop and phone width are PNGs of that
width.

Without Chromium (apt-get install chromium chromium-driver) these tests skip and say so;
CI (.ci/run installs both) sets PLAUDIT_REQUIRE_BROWSER=1, which makes them fail instead.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from click.testing import CliRunner
from pytest_postgresql.janitor import DatabaseJanitor

from browser import DESKTOP, PHONE, binaries, chromium, screenshot, set_viewport
from plaudit.cli import cli

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
REQUIRE_BROWSER = "PLAUDIT_REQUIRE_BROWSER"


@dataclass
class Site:
    folder: Path
    dsn: str

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    @property
    def pages(self) -> list[Path]:
        return sorted(self.folder.rglob("*.html"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        _no_browser("selenium is not installed (pip install -e '.[test]')")
    if binaries() is None:
        _no_browser("Chromium is not installed (apt-get install chromium chromium-driver)")
    driver = chromium()
    yield driver
    driver.quit()


def _no_browser(reason: str) -> None:
    if os.environ.get(REQUIRE_BROWSER):
        pytest.fail(f"{REQUIRE_BROWSER} is set but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site(postgresql_noproc: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The demo's rules on 300 users, backfilled, and their report (the leaderboards' users
    and user 7 get pages), in a database of this module's own."""
    proc = postgresql_noproc
    dbname = f"plaudit_report_{os.getpid()}"
    janitor = DatabaseJanitor(
        user=proc.user, host=proc.host, port=proc.port, dbname=dbname,
        template_dbname=proc.template_dbname, maintenance_dbname=proc.maintenance_dbname,
        password=proc.password)
    project = tmp_path_factory.mktemp("browser-project")
    shutil.copytree(REPO / "rules", project / "rules")
    shutil.copy(REPO / "plaudit.yaml", project / "plaudit.yaml")
    # one level's icon is a project file, another's a file that is not there
    rule = project / "rules" / "commentator.yaml"
    text = rule.read_text()
    for key, icon in (("bronze", "img/chatty.svg"), ("silver", "img/gone.png")):
        assert f"{{key: {key}," in text
        text = text.replace(f"{{key: {key},", f"{{key: {key}, icon: {icon},")
    rule.write_text(text)
    (project / "img").mkdir()
    (project / "img" / "chatty.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48">'
        '<circle cx="24" cy="24" r="20" fill="#2f6f9f"/></svg>')
    with janitor:
        dsn = f"postgresql://{proc.user}@{proc.host}:{proc.port}/{dbname}"
        site = Site(project / "report", dsn)
        site.sql("SELECT * FROM demo_generate(300, 20000)")
        for args in (["deploy"], ["backfill"], ["award", "first_post", "7", "--reason", "a page"],
                     ["report", "--out", str(site.folder), "--user", "7"]):
            result = CliRunner().invoke(
                cli, ["--dsn", dsn, "--project", str(project), *args], catch_exceptions=False)
            assert result.exit_code == 0, result.output
        yield site


def _load(driver: Any, page: Path, size: tuple[int, int] = DESKTOP) -> None:
    set_viewport(driver, *size)
    driver.get(page.as_uri())


def test_every_page_loads_clean(site: Site, browser: Any) -> None:
    """No console message, every image drawn, every link to a file of the folder."""
    assert len(site.pages) > 10
    problems, drawn = [], 0
    browser.get_log("browser")  # what came before is not the report's
    for page in site.pages:
        _load(browser, page)
        found, images = _page_problems(browser, site.folder, page)
        problems += found
        drawn += images
    assert problems == []
    assert drawn > 100


def _page_problems(driver: Any, folder: Path, page: Path) -> tuple[list[str], int]:
    """What is wrong with the loaded page, and how many images it draws."""
    where = page.relative_to(folder)
    problems = [f"{where}: console: {m['message']}" for m in driver.get_log("browser")]
    images = driver.execute_script(
        "return [...document.images].map(i => [i.getAttribute('src'), i.complete, "
        "i.naturalWidth, i.getAttribute('alt')])")
    problems += [f"{where}: broken image {src}" for src, done, width, _ in images
                 if not done or width == 0]
    problems += [f"{where}: image {src} without alt" for src, *_, alt in images if alt is None]
    links = driver.execute_script(
        "return [...document.querySelectorAll('[href], [src]')].map("
        "e => e.getAttribute('href') ?? e.getAttribute('src'))")
    ids = set(driver.execute_script(
        "return [...document.querySelectorAll('[id]')].map(e => e.id)"))
    for link in links:
        problems += _unresolved(folder, page, link, ids)
    return problems, len(images)


def _unresolved(folder: Path, page: Path, link: str, ids: set[str]) -> list[str]:
    parts = urlsplit(link)
    where = page.relative_to(folder)
    if parts.scheme or parts.netloc:
        return [f"{where}: {link} leaves the folder"]
    if not parts.path:  # a fragment of this page
        return [] if parts.fragment in ids else [f"{where}: no element #{parts.fragment}"]
    target = (page.parent / unquote(parts.path)).resolve()
    if not target.is_relative_to(folder.resolve()) or not target.is_file():
        return [f"{where}: {link} is no file of the report"]
    return []


def test_the_catalogue_shows_the_holders_and_rarity_of_sql(site: Site, browser: Any) -> None:
    _load(browser, site.folder / "badges.html")
    shown = browser.execute_script(
        "return [...document.querySelectorAll('article.badge tr[data-level]')].map(r => ["
        "r.closest('article').dataset.badge, r.dataset.level, "
        "r.querySelector('.holders').textContent, r.querySelector('.rarity').textContent])")
    holders = dict(((b, lv), int(n)) for b, lv, n in site.sql(
        "SELECT badge, level, count(DISTINCT user_id) FROM plaudit.user_badge GROUP BY 1, 2"))
    players = dict(site.sql("""
        SELECT badge, count(DISTINCT user_id) FROM (
            SELECT badge, user_id FROM plaudit.user_progress
            UNION SELECT badge, user_id FROM plaudit.user_badge) AS t GROUP BY 1"""))
    levels = site.sql("SELECT l.badge, l.key FROM plaudit.badge_level AS l "
                      "JOIN plaudit.badge AS b ON b.slug = l.badge WHERE NOT b.secret "
                      "ORDER BY 1, l.position")
    expected = {}
    for badge, level in levels:
        n = holders.get((badge, level), 0)
        rarity = 100 * n / players[badge] if players.get(badge) else None
        expected[(badge, level)] = (
            n, "–" if rarity is None else "<0.1%" if 0 < rarity < 0.1 else f"{rarity:.1f}%")
    read = {(b, lv): (int(n.replace(",", "")), r.strip()) for b, lv, n, r in shown}
    assert read == expected
    assert "all_rounder" not in {b for b, _ in read}  # the bundled secret badge
    assert sum(n for n, _ in read.values()) > 500


BOARD_SQL = """
    SELECT ub.user_id, {value} AS value, max(ub.achieved_at) AS reached_at
    FROM plaudit.user_badge AS ub
    JOIN plaudit.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
    WHERE %(start)s::timestamptz IS NULL OR ub.achieved_at >= %(start)s
      AND ub.achieved_at < %(start)s::timestamptz + interval '1 month'
    GROUP BY 1"""


def _ranked(rows: list[tuple[Any, ...]], limit: int = 10) -> list[tuple[int, int, int]]:
    """Standard competition ranking: highest first, ties by who reached the value first,
    then by user id; a rank is one more than the users with more."""
    ordered = sorted(rows, key=lambda r: (-r[1], r[2], r[0]))
    return [(1 + sum(1 for o in rows if o[1] > value), user, int(value))
            for user, value, _ in ordered[:limit]]


@pytest.mark.parametrize("by, period", [
    ("points", "all"), ("points", "month"), ("badges", "all"), ("badges", "month")])
def test_the_leaderboards_are_sqls(site: Site, browser: Any, by: str, period: str) -> None:
    _load(browser, site.folder / "index.html")
    shown = browser.execute_script(
        f"return [...document.querySelectorAll('section.board[data-by={by}]"
        f"[data-period={period}] tbody tr')].map(r => [r.querySelector('.rank').textContent,"
        "r.dataset.user, r.querySelector('.value').textContent])")
    now = datetime.now(UTC)  # the demo's timezone is UTC
    start = datetime(now.year, now.month, 1, tzinfo=UTC) if period == "month" else None
    value = "sum(l.points)" if by == "points" else "count(*)"
    expected = _ranked(site.sql(BOARD_SQL.format(value=value), {"start": start}))
    assert [(int(r), int(u), int(v.replace(",", ""))) for r, u, v in shown] == expected
    if period == "all":
        assert len(expected) == 10


def test_user_pages_show_the_points_badges_and_rank_of_sql(site: Site, browser: Any) -> None:
    everyone = site.sql(BOARD_SQL.format(value="sum(l.points)"), {"start": None})
    counts = dict(site.sql("SELECT user_id, count(*) FROM plaudit.user_badge GROUP BY 1"))
    users = sorted(site.folder.glob("users/*.html"))
    assert "7.html" in {p.name for p in users}
    for page in users:
        user = int(page.stem)
        _load(browser, page)
        points, badges, rank = browser.execute_script(
            "return [document.querySelector('[data-total=points]').textContent,"
            "document.querySelector('[data-total=badges]').textContent,"
            "document.querySelector('table.ranks tbody tr td.num').textContent]")
        value = next(int(v) for u, v, _ in everyone if u == user)
        place = 1 + sum(1 for _, v, _ in everyone if v > value)
        assert (int(points.replace(",", "")), int(badges.replace(",", "")), rank) == (
            value, counts[user], f"#{place:,} of {len(everyone):,}"), page.name


def test_no_page_scrolls_sideways_on_a_phone(site: Site, browser: Any) -> None:
    wide = []
    for page in site.pages:
        _load(browser, page, PHONE)
        width, view = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        assert view == PHONE[0]
        if width > view:
            wide.append(f"{page.relative_to(site.folder)}: {width}px")
    assert wide == []


def test_axe_finds_no_accessibility_violation(site: Site, browser: Any) -> None:
    found = []
    pages = [site.folder / "index.html", site.folder / "badges.html",
             site.folder / "users" / "7.html"]
    for page in pages:
        for size in (DESKTOP, PHONE):
            _load(browser, page, size)
            found += [f"{page.name} at {size[0]}px: {v}" for v in _axe(browser)]
    assert found == []


def _axe(driver: Any) -> list[str]:
    """axe-core's WCAG 2.0/2.1 A and AA rules and its best practices on the loaded page:
    each rule violated, how often, where first, and why."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    violations = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', "
        "'wcag21a', 'wcag21aa', 'best-practice']}, resultTypes: ['violations']})"
        ".then(r => done(r.violations.map(v => [v.id, v.nodes.length, "
        "v.nodes[0].target.join(' '), v.nodes[0].failureSummary])))"
        ".catch(e => done([['axe failed', 0, String(e), '']]))")
    return [f"{rule} ({n}x, e.g. {target}): {summary}"
            for rule, n, target, summary in violations]


BAD_PAGE = """<!doctype html><html><head><title>bad</title></head><body>
<h2>No h1 above</h2><h4>A level skipped</h4>
<p style="color: #aaa">Too pale to read.</p>
<img src="gone.png">
<a href="nowhere.html">a missing page</a> <a href="#nothing">a missing anchor</a>
<div style="width: 600px">too wide for a phone</div>
</body></html>"""


def test_the_checks_catch_a_bad_page(browser: Any, tmp_path: Path) -> None:
    """The controls: each check above finds what it looks for on a page made to fail it."""
    page = tmp_path / "bad.html"
    page.write_text(BAD_PAGE)
    browser.get_log("browser")
    _load(browser, page, PHONE)
    problems, _ = _page_problems(browser, tmp_path, page)
    assert [p.split(": ", 1)[1].split(" - ")[0] for p in problems] == [
        f"console: {(tmp_path / 'gone.png').as_uri()}",
        "broken image gone.png", "image gone.png without alt",
        "gone.png is no file of the report", "nowhere.html is no file of the report",
        "no element #nothing"]
    assert browser.execute_script("return document.documentElement.scrollWidth") > PHONE[0]
    rules = {v.split(" ")[0] for v in _axe(browser)}
    assert {"color-contrast", "image-alt", "html-has-lang", "heading-order",
            "page-has-heading-one", "landmark-one-main", "region"} <= rules


def test_screenshots_at_desktop_and_phone_width(site: Site, browser: Any,
                                                tmp_path: Path) -> None:
    for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        path = tmp_path / f"report-{name}.png"
        screenshot(browser, (site.folder / "index.html").as_uri(), size, path)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == size  # IHDR: width, height
