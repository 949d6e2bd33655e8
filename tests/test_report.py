"""The HTML report (issue 15, second part) without a browser: what the catalogue lists
(secret and retired badges), where icons come from (a project file, a URL, a default for a
missing file), which users get a page, the folder it may write into, locales, and the weekly
series against a count in Python. tests/test_report_browser.py loads the pages in Chromium."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, datetime, timedelta
from html.parser import HTMLParser
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pytest

from plaudit.report.charts import nice_ceiling, short, weekly_chart
from plaudit.report.icons import default_icon
from plaudit.runtime.deploy import deploy_rules

CONFIG = """
    timezone: America/New_York
    categories:
      reading: {name: Reading, i18n: {fr: Lecture}}
"""
BADGES = {
    "reader": """
        slug: reader
        name: Reader
        description: Reads.
        kind: award
        category: reading
        levels:
          - {key: bronze, name: Page Turner, points: 5, icon: img/star.svg}
          - {key: silver, name: Bookworm, points: 10, icon: img/missing.png}
          - {key: gold, name: Library, points: 20, icon: "https://example.org/gold.png"}
        i18n:
          fr: {name: Lecteur, levels: {bronze: {name: Tourneur de pages}}}
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at, 'bronze' AS level
          FROM users AS u WHERE false
    """,
    "owl": """
        slug: owl
        name: Night Owl
        kind: award
        secret: true
        levels:
          - {key: default, name: Night Owl, points: 50}
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at FROM users AS u WHERE false
    """,
    "veteran": """
        slug: veteran
        name: Veteran
        kind: award
        enabled: false
        levels:
          - {key: default, name: Veteran, points: 1}
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at FROM users AS u WHERE false
    """,
    "retired": """
        slug: retired
        name: Retired
        kind: award
        enabled: false
        levels:
          - {key: default, name: Retired, points: 1}
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at FROM users AS u WHERE false
    """,
}
NEW_YORK = ZoneInfo("America/New_York")
# (user, badge, level, achieved at, New York time)
GRANTS = [
    (1, "reader", "bronze", "2024-03-04 09:00"),
    (1, "reader", "silver", "2024-03-10 23:30"),  # Sunday night: still the week of March 4
    (2, "reader", "bronze", "2024-03-11 00:30"),  # the next week
    (3, "reader", "bronze", "2024-03-27 12:00"),  # two weeks without grants before it
    (3, "owl", "default", "2024-03-28 12:00"),
    (4, "veteran", "default", "2024-03-28 13:00"),
]


class Page(HTMLParser):
    """A page's elements as (tag, attributes), and its text."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def attr(self, tag, name):
        return [a[name] for t, a in self.elements if t == tag and name in a]


@pytest.fixture
def reported(project, engine_for, run_cli):
    project.write("plaudit.yaml", CONFIG)
    for slug, text in BADGES.items():
        project.write(f"rules/{slug}.yaml", text)
    project.write("img/star.svg", '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    for user, badge, level, at in GRANTS:
        moment = datetime.fromisoformat(at).replace(tzinfo=NEW_YORK)
        engine.award(badge, user, "test", level=level, achieved_at=moment)

    def report(*args):
        out = project.path / "site"
        result = run_cli(project, "report", "--out", str(out), *args)
        return result, out

    return project, engine, report


def test_the_catalogue_lists_what_may_be_seen(reported):
    _, _, report = reported
    result, out = report()
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out / 'index.html'}\n"
    page = Page((out / "badges.html").read_text())
    # secret badges never; a disabled one while someone holds it, said to be retired
    assert page.attr("article", "data-badge") == ["reader", "veteran"]
    assert "No longer awarded." in page.text
    holders = dict(re.findall(r'<tr data-level="(\w+)">.*?<td class="num holders">([\d,]+)</td>',
                              (out / "badges.html").read_text(), re.S))
    assert holders == {"bronze": "3", "silver": "1", "gold": "0", "default": "1"}


def test_icons_a_file_a_url_and_a_default_for_a_missing_file(reported):
    _, _, report = reported
    result, out = report()
    assert result.stderr.splitlines()[1:] == [
        f"note: icon img/missing.png is no file in {out.parent}: the default icon is shown "
        "instead"]
    sources = Page((out / "badges.html").read_text()).attr("img", "src")
    assert set(sources) == {"icons/files/img/star.svg", "icons/level-2.svg",
                            "https://example.org/gold.png", "icons/level-1.svg"}
    for src in sources:
        if not src.startswith("https:"):
            assert (out / src).is_file(), src
    assert (out / "icons/files/img/star.svg").read_text() == (
        out.parent / "img/star.svg").read_text()
    assert all(Page((out / "badges.html").read_text()).attr("img", "alt"))


@pytest.mark.parametrize("args, pages", [
    ([], ["1.html", "2.html", "3.html", "4.html"]),  # everyone is on a board here
    (["--users", "none", "--user", "3"], ["3.html"]),
    (["--users", "none", "--user", "99"], ["99.html"]),  # nothing earned: an empty case
    (["--users", "all"], ["1.html", "2.html", "3.html", "4.html"]),
    (["--users", "none"], []),
])
def test_which_users_get_a_page(reported, args, pages):
    _, _, report = reported
    result, out = report(*args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "users").iterdir()) == pages
    index = Page((out / "index.html").read_text())
    linked = {h for h in index.attr("a", "href") if h.startswith("users/")}
    assert linked == {f"users/{p}" for p in pages if p != "99.html"}


def test_a_user_page_shows_the_earned_secret_badge_and_the_ranks(reported, sql):
    _, _, report = reported
    _, out = report("--users", "none", "--user", "3")
    text = (out / "users/3.html").read_text()
    assert "Night Owl" in text  # earned: shown on their page, never in the catalogue
    points = sql("SELECT sum(l.points) FROM plaudit.user_badge AS ub JOIN plaudit.badge_level "
                 "AS l ON (l.badge, l.key) = (ub.badge, ub.level) WHERE ub.user_id = 3")[0][0]
    assert f'<strong data-total="points">{points}</strong>' in text
    # 3 has 55 points: first of four
    assert re.search(r"Points, all time</td>\s*<td class=\"num\">#1 of 4</td>", text)


def test_a_second_report_replaces_the_first(reported):
    _, _, report = reported
    _, out = report("--users", "all")
    result, _ = report("--users", "none", "--user", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "users").iterdir()) == ["2.html"]


@pytest.mark.parametrize("setup, says", [
    (lambda out: out.mkdir() or (out / "notes.txt").write_text("mine"),
     "is a folder that holds other files than a plaudit report"),
    (lambda out: out.write_text("a file"), "is a file, not a folder"),
])
def test_it_never_writes_into_someone_elses_folder(reported, setup, says):
    project, _, report = reported
    setup(project.path / "site")
    result, out = report()
    assert result.exit_code == 2
    assert says in result.stderr
    assert not (out / "index.html").exists() if out.is_dir() else out.read_text() == "a file"


def test_a_user_id_of_another_type_exits_2_before_any_page(reported):
    _, _, report = reported
    result, out = report("--user", "abc")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        'Error: --user abc: not a user id here (invalid input syntax for type bigint: "abc")\n')
    assert list(out.iterdir()) == []


def test_badge_texts_in_a_locale(reported):
    _, _, report = reported
    _, out = report("--locale", "fr-CA")
    text = (out / "badges.html").read_text()
    assert '<html lang="en">' in text  # the report's own words
    assert re.search(r'<article class="badge" id="badge-reader" data-badge="reader" '
                     r'lang="fr-CA">', text)
    assert "Lecteur" in text and "Tourneur de pages" in text and "Lecture" in text
    assert "Bookworm" in text  # untranslated: the rule's own text


def test_grants_per_week_against_a_count_in_python(reported, engine_for):
    project, engine, _ = reported
    rows = engine.db.execute("report_grants_per_week", [engine.config.timezone])
    counted = Counter()
    for *_, at in GRANTS:
        day = datetime.fromisoformat(at).date()
        counted[day - timedelta(days=day.weekday())] += 1
    today = datetime.now(NEW_YORK).date()
    monday, weeks = date(2024, 3, 4), []
    while monday <= today:
        weeks.append((monday, counted[monday]))
        monday += timedelta(days=7)
    assert [(r["week"], r["grants"]) for r in rows] == weeks
    assert weeks[:4] == [(date(2024, 3, 4), 2), (date(2024, 3, 11), 1), (date(2024, 3, 18), 0),
                         (date(2024, 3, 25), 3)]


@pytest.mark.parametrize("value, ceiling, label", [
    (0, 1, "0"), (1, 1, "1"), (7, 10, "7"), (13, 20, "13"), (480, 500, "480"),
    (1500, 2000, "1.5k"), (12_000, 20_000, "12k"), (3_000_000, 5_000_000, "3M"),
])
def test_axis_ceilings_and_labels(value, ceiling, label):
    assert (nice_ceiling(value), short(value)) == (ceiling, label)


def test_the_weekly_chart_draws_one_bar_per_week():
    weeks = [(date(2024, 1, 1) + timedelta(days=7 * i), i % 5) for i in range(60)]
    svg = ElementTree.fromstring(str(weekly_chart(weeks, "c")))
    ns = "{http://www.w3.org/2000/svg}"
    bars = svg.findall(f"{ns}rect")
    assert len(bars) == 60
    assert [b.find(f"{ns}title").text for b in bars[:2]] == [
        "Week of 2024-01-01: 0 grants", "Week of 2024-01-08: 1 grant"]
    # bars in proportion: 4 grants, four times as tall as 1
    heights = [float(b.get("height")) for b in bars]
    assert max(heights) == pytest.approx(heights[1] * 4)
    # the axis: 0 and 5 (the ceiling of 4; its half is not labelled), then the quarters
    labels = [t.text for t in svg.findall(f"{ns}text")]
    assert labels == ["0", "5", "Apr 2024", "Jul 2024", "Oct 2024", "Jan 2025"]
    assert svg.get("role") == "img" and svg.find(f"{ns}title").text == "Grants per week"


def test_default_icons_differ_by_level_and_are_svg():
    icons = [default_icon(position) for position in range(1, 8)]
    parsed = [ElementTree.fromstring(icon) for icon in icons]
    assert all(p.get("width") == "64" for p in parsed)
    assert len(set(icons)) == 7
    # shape and colour cycle after six levels; the number drawn does not
    assert icons[6].replace(">7<", ">1<") == icons[0]
