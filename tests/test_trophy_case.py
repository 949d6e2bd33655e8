"""The trophy case as data (plaudit.trophy_case, Engine.trophy_case, `plaudit user`) and the
badge's face wherever a grant is shown: standings checked against the app rows themselves,
secret and disabled badges, locales and their fallbacks, face-only redeploys that are never
due, icon and points in check, unseen and NOTIFY (under 8000 bytes)."""

from __future__ import annotations

import json

import psycopg
import pytest

from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.engine import Event

CONFIG = """
    categories:
      talk: {name: Talk, i18n: {fr: Discussion}}
      posts: Posts
"""

TALKER = """
    slug: talker
    name: Talker
    description: Talks.
    kind: count
    triggers: [comment_created]
    category: talk
    order: 1
    levels:
      - {key: bronze, name: Chatty, threshold: 2, points: 5, icon: chatty.svg,
         description: Wrote 2 comments., hint: Write 2 comments.}
      - {key: silver, name: Talkative, threshold: 4, points: 10, icon: talkative.svg,
         description: Wrote 4 comments., hint: Write 4 comments.}
    i18n:
      fr:
        name: Bavard
        description: Commentaires.
        levels:
          bronze: {name: Causeur, description: A écrit 2 commentaires.,
                   hint: Écrivez 2 commentaires.}
          silver: {name: Orateur}
      fr-CA: {name: Jaseur}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at
      FROM comments AS c
      WHERE {{ affected('c.author_id') }}
"""

HIDDEN = """
    slug: hidden
    name: Night Owl
    kind: count
    category: talk
    order: 2
    secret: true
    levels:
      - {key: bronze, name: Owl, threshold: 3, points: 20, hint: Keep talking.}
      - {key: silver, name: Great Owl, threshold: 6, points: 40, hint: Keep talking more.}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at FROM comments AS c
"""

OFF = """
    slug: retired
    name: Retired
    kind: count
    category: talk
    order: 3
    enabled: false
    levels:
      - {key: bronze, name: Veteran, threshold: 1, points: 1}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at FROM comments AS c
"""

POSTER = """
    slug: poster
    name: Poster
    kind: award
    category: posts
    i18n: {fr: {levels: {default: {hint: Publiez un billet.}}}}
    query: |
      SELECT p.author_id AS user_id, min(p.created_at) AS achieved_at
      FROM posts AS p
      GROUP BY p.author_id
"""

MEDAL = """
    slug: medal
    name: Medal
    kind: award
    levels:
      - {key: gold, name: Gold Medal, points: 50, hint: Win a season.}
    query: |
      SELECT m.user_id, m.won_at AS achieved_at, m.season AS scope FROM medals AS m
"""

COMMENTS = {1: 1, 2: 3, 3: 5, 4: 0}  # comments written per user


@pytest.fixture
def site(project, engine_for, sql):
    """The five rules deployed and backfilled; user 4 was awarded the disabled badge."""
    project.write("plaudit.yaml", CONFIG)
    for text in (TALKER, HIDDEN, OFF, POSTER, MEDAL):
        project.write(f"rules/{text.split('slug: ')[1].split()[0]}.yaml", text)
    sql("INSERT INTO users (id, name, created_at) SELECT u, 'u', '2024-01-01' "
        "FROM generate_series(1, 4) AS u")
    sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, 3, 'article', 't', '2024-01-02 09:00+00')")
    for user, count in COMMENTS.items():
        sql("INSERT INTO comments (post_id, author_id, body, created_at) "
            "SELECT 1, %s, 'x', timestamptz '2024-02-01 10:00+00' + d * interval '1 day' "
            "FROM generate_series(1, %s) AS d", [user, count])
    sql("CREATE TABLE medals (user_id bigint, season int, won_at timestamptz)")
    sql("INSERT INTO medals VALUES (1, 1, '2024-03-01'), (1, 2, '2024-06-01'), "
        "(3, 2, '2024-06-01')")
    engine = engine_for(project)
    rules = project.rules()
    deploy_rules(engine, rules)
    assert {r.status for r in engine.backfill([r for r in rules if r.enabled])} == {"ok"}
    engine.award("retired", 4, "imported from the old forum")
    return engine


def case(engine, user, locale=None):
    return engine.trophy_case(str(user), locale).badges


@pytest.mark.parametrize(("user", "listed"), [
    (1, [("talker", "", "in_progress"), ("poster", "", "locked"), ("medal", "1", "unlocked"),
         ("medal", "2", "unlocked")]),
    (2, [("talker", "", "unlocked"), ("hidden", "", "unlocked"), ("poster", "", "locked"),
         ("medal", "", "locked")]),
    (3, [("talker", "", "unlocked"), ("hidden", "", "unlocked"), ("poster", "", "unlocked"),
         ("medal", "2", "unlocked")]),
    # a disabled badge only where earned (by hand here); nothing at all: every listable badge
    (4, [("talker", "", "locked"), ("retired", "", "unlocked"), ("poster", "", "locked"),
         ("medal", "", "locked")]),
])
def test_every_listable_badge_by_category_order_and_name_once_per_scope(site, user, listed):
    assert [(b["badge"], b["scope"], b["status"]) for b in case(site, user)] == listed


def _standing(count, levels=(("bronze", 2), ("silver", 4))):
    """Where `count` comments stand on talker's levels, worked out here, not by plaudit."""
    held = [key for key, threshold in levels if count >= threshold]
    ahead = [(key, threshold) for key, threshold in levels if count < threshold]
    status = "unlocked" if held else "in_progress" if count else "locked"
    if not ahead:
        return status, held[-1], None, count, None, 100
    key, threshold = ahead[0]
    return status, held[-1] if held else None, key, count, threshold, count * 100 // threshold


@pytest.mark.parametrize("user", sorted(COMMENTS))
def test_standing_and_progress_match_the_app_rows(site, sql, user):
    [count] = sql("SELECT count(*)::int FROM comments WHERE author_id = %s", [user])[0]
    [talker] = [b for b in case(site, user) if b["badge"] == "talker"]
    assert (talker["status"], talker["level"], talker["next_level"], talker["value"],
            talker["threshold"], talker["percent"]) == _standing(count)
    # points: of every level held, as leaderboards count them; per row and in all
    held = dict(sql("SELECT ub.badge || '/' || ub.scope, sum(l.points)::int "
                    "FROM plaudit.user_badge AS ub JOIN plaudit.badge_level AS l "
                    "ON l.badge = ub.badge AND l.key = ub.level WHERE ub.user_id = %s "
                    "GROUP BY 1", [user]))
    rows = case(site, user)
    assert {f"{b['badge']}/{b['scope']}": b["points"] for b in rows if b["level"]} == held
    assert sum(b["points"] for b in rows) == site.trophy_case(str(user)).points


@pytest.mark.parametrize(("user", "listed", "standing"), [
    (1, False, None),  # progress (1 of 3) is no reason to list a secret badge
    (2, True, ("bronze", "silver", 3, 6, 50, "Keep talking more.")),
    (3, True, ("bronze", "silver", 5, 6, 83, "Keep talking more.")),  # once earned, progress
    (4, False, None),
])
def test_a_secret_badge_is_listed_only_where_earned(site, user, listed, standing):
    hidden = [b for b in case(site, user) if b["badge"] == "hidden"]
    assert bool(hidden) is listed
    if listed:
        [row] = hidden
        assert (row["level"], row["next_level"], row["value"], row["threshold"],
                row["percent"], row["hint"]) == standing
        assert row["secret"] is True


def test_a_revoked_secret_badge_is_hidden_again(site):
    site.revoke("hidden", 2, "a mistake")
    assert "hidden" not in [b["badge"] for b in case(site, 2)]


TEXTS = ("name", "level_name", "next_level_name", "description", "hint", "category_name")
RULE_TEXTS_2 = ("Talker", "Chatty", "Talkative", "Wrote 2 comments.", "Write 4 comments.", "Talk")
FRENCH_2 = ("Bavard", "Causeur", "Orateur", "A écrit 2 commentaires.", "Write 4 comments.",
            "Discussion")
QUEBEC_2 = ("Jaseur",) + FRENCH_2[1:]
RULE_TEXTS_4 = ("Talker", None, "Chatty", "Talks.", "Write 2 comments.", "Talk")
FRENCH_4 = ("Bavard", None, "Causeur", "Commentaires.", "Écrivez 2 commentaires.", "Discussion")


@pytest.mark.parametrize(("user", "locale", "texts"), [
    (2, None, RULE_TEXTS_2),
    (2, "fr", FRENCH_2),  # silver has no French hint: the rule's own
    (2, "fr-CA", QUEBEC_2),  # fr-CA names it; the rest falls back to fr
    (2, "FR_ca", QUEBEC_2),  # any case, '_' for '-'
    (2, "fr-BE", FRENCH_2),
    (2, "zh-Hant-TW", RULE_TEXTS_2),  # no zh of any kind: the rule's texts
    (2, "de", RULE_TEXTS_2),
    (4, None, RULE_TEXTS_4),  # locked: the badge's description, the first level's hint
    (4, "fr-CA", ("Jaseur",) + FRENCH_4[1:]),
])
def test_texts_in_a_locale_fall_back_to_its_language_then_to_the_rule(site, user, locale, texts):
    [talker] = [b for b in case(site, user, locale) if b["badge"] == "talker"]
    assert tuple(talker[text] for text in TEXTS) == texts


@pytest.mark.parametrize(("locale", "name", "hint"), [
    (None, "Poster", None), ("fr", "Poster", "Publiez un billet."),
    ("fr-CA", "Poster", "Publiez un billet."), ("pt-BR", "Poster", None),
])
def test_an_awards_single_level_is_its_first_until_held(site, locale, name, hint):
    [poster] = [b for b in case(site, 1, locale) if b["badge"] == "poster"]
    assert (poster["next_level"], poster["next_level_name"], poster["hint"]) == (
        "default", name, hint)
    assert (poster["value"], poster["threshold"], poster["percent"]) == (None, None, 0)
    [held] = [b for b in case(site, 3, locale) if b["badge"] == "poster"]
    assert (held["level"], held["next_level"], held["percent"], held["hint"]) == (
        "default", None, 100, None)


def test_icons_are_the_held_levels_else_the_next_ones(site):
    icons = {user: next(b["icon"] for b in case(site, user) if b["badge"] == "talker")
             for user in COMMENTS}
    assert icons == {1: "chatty.svg", 2: "chatty.svg", 3: "talkative.svg", 4: "chatty.svg"}


def test_categories_follow_plaudit_yaml(site, project, engine_for, sql):
    assert sql("SELECT key, position, name, i18n FROM plaudit.category ORDER BY position") == [
        ("talk", 1, "Talk", {"fr": "Discussion"}), ("posts", 2, "Posts", {})]
    project.write("plaudit.yaml", "categories: {posts: Posts, talk: Talking}\n")
    engine_for(project).configure()  # as every deploy does
    assert sql("SELECT key, position, name, i18n FROM plaudit.category ORDER BY position") == [
        ("posts", 1, "Posts", {}), ("talk", 2, "Talking", {})]
    assert [b["badge"] for b in case(site, 3)] == ["poster", "talker", "hidden", "medal"]


def test_plaudit_user_shows_the_case_in_a_locale(site, project, run_cli):
    shown = run_cli(project, "user", "2", "--locale", "fr")
    assert (shown.exit_code, shown.stdout.splitlines()) == (0, [
        "User 2: 2 badges, 25 points",
        "Discussion",
        "  Bavard · Causeur  2024-02-03 10:00",
        "    A écrit 2 commentaires.",
        "    [###############-----]  3 / 4 to Orateur: Write 4 comments.",
        "  Night Owl · Owl   2024-02-04 10:00",
        "    [##########----------]  3 / 6 to Great Owl: Keep talking more.",
        "Posts",
        "  Poster            locked",
        "    to earn Poster: Publiez un billet.",
        "Other",
        "  Medal             locked",
        "    to earn Gold Medal: Win a season.",
        "Rank by points: #3 of 4 (above: user 3, 85; below: user 4, 1)",
    ])
    data = json.loads(run_cli(project, "user", "2", "--locale", "fr-CA", "--json").stdout)
    assert (data["locale"], data["points"], data["badges"][0]["name"]) == ("fr-CA", 25, "Jaseur")
    assert data["badges"][0] == {
        "badge": "talker", "scope": "", "status": "unlocked", "name": "Jaseur",
        "category": "talk", "category_name": "Discussion", "level": "bronze",
        "level_name": "Causeur", "next_level": "silver", "next_level_name": "Orateur",
        "value": 3, "threshold": 4, "percent": 75, "icon": "chatty.svg", "points": 5,
        "description": "A écrit 2 commentaires.", "hint": "Write 4 comments.",
        "achieved_at": "2024-02-03T10:00:00+00:00", "source": "rule", "secret": False,
        "kind": "count", "period": None}
    assert [g["badge"] for g in data["grants"]] == ["talker", "hidden"]


def test_a_locale_that_is_none_is_a_usage_error(site, project, run_cli):
    result = run_cli(project, "user", "2", "--locale", "french")
    assert result.exit_code == 2
    assert "Invalid value for '--locale': 'french' must be a locale like fr or pt-BR" in (
        result.stderr)


@pytest.mark.parametrize(("old", "new", "note"), [
    ("description: Talks.", "description: Says things.", "description changed"),
    ("hint: Write 2 comments.", "hint: Two comments.", "bronze hint changed"),
    ("description: Wrote 4 comments.", "description: Four.", "silver description changed"),
    ("icon: chatty.svg", "icon: chatty.png", "bronze icon chatty.svg → chatty.png"),
    ("points: 5,", "points: 7,", "bronze points 5 → 7"),
    ("name: Chatty", "name: Chatterbox", "bronze name Chatty → Chatterbox"),
    ("category: talk", "category: posts", "category talk → posts"),
    ("order: 1", "order: 9", "order 1 → 9"),
    ("category: talk\n", "category: talk\nsecret: true\n", "secret False → True"),
    ("fr-CA: {name: Jaseur}", "fr-CA: {name: Placoteux}", "i18n changed"),
])
def test_a_face_only_change_is_deployed_and_never_due(site, project, sql, old, new, note):
    due = "SELECT slug, due FROM plaudit.badge WHERE slug = 'talker' AND due IS NOT NULL"
    assert sql(due) == []
    path = project.path / "rules" / "talker.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    plan = deploy_rules(site, project.rules())
    [change] = [c for c in plan.changes if c.slug == "talker"]
    assert change.status == "changed" and change.notes == [f"Talker: {note}"]
    assert sql(due) == []  # not due: its compiled SQL is the same
    # what makes more users earn it is due, as before
    path.write_text(path.read_text().replace("threshold: 4", "threshold: 3"))
    deploy_rules(site, project.rules())
    assert sql(due) == [("talker", "changed")]


@pytest.fixture
def listener(dsn):
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("LISTEN plaudit_award")
    yield lambda: [json.loads(n.payload) for n in conn.notifies(timeout=0.3)]
    conn.close()


def test_icon_and_points_travel_with_every_grant_shown(site, sql, listener):
    sql("INSERT INTO comments (post_id, author_id, body, created_at) "
        "VALUES (1, 4, 'x', '2024-05-01 10:00+00'), (1, 4, 'y', '2024-05-02 10:00+00')")
    [checked] = [g for g in site.check([Event("comment_created", 4)]) if g["badge"] == "talker"]
    assert (checked["level"], checked["icon"], checked["points"]) == ("bronze", "chatty.svg", 5)
    unseen = {g["badge"]: (g["level"], g["icon"], g["points"]) for g in site.unseen(4)}
    assert unseen["talker"] == ("bronze", "chatty.svg", 5)
    assert [n for n in listener() if n["badge"] == "talker"] == [
        {"user_id": 4, "badge": "talker", "level": "bronze", "name": "Chatty",
         "icon": "chatty.svg", "points": 5, "achieved_at": "2024-05-02T10:00:00+00:00"}]


LONG = """
    slug: long
    name: Long
    kind: award
    levels:
      - {{key: only, name: "{name}", points: 3, icon: "{icon}"}}
    query: SELECT 1::bigint AS user_id, now() AS achieved_at WHERE false
"""


@pytest.mark.parametrize(("icon", "carried"), [("i" * 500, True), ("i" * 501, False)])
def test_a_notification_stays_under_8000_bytes(project, deployed, listener, icon, carried):
    # multibyte text: what is cut is counted in characters, the limit in bytes
    engine = deployed(LONG.format(name="é" * 5000, icon=icon))
    engine.award("long", 7, "a test", scope="€" * 5000)
    [payload] = listener()
    assert len(json.dumps(payload, ensure_ascii=False).encode()) < 8000
    assert (payload["name"], payload["scope"], payload["points"]) == ("é" * 200, "€" * 200, 3)
    assert payload.get("icon") == (icon if carried else None)
    # an icon left out of the notification is still the grant's
    assert [g["icon"] for g in engine.unseen(7)] == [icon]


def test_an_upgrade_keeps_the_app_roles_execute_on_functions_whose_result_grew(
        site, sql, dsn):
    """unseen and check gained `icon`: a new result type means DROP FUNCTION, whose grants
    init gives back (as 0.1.0's unseen, granted to an app role, upgraded)."""
    app = f"app_{dsn.rsplit('/', 1)[1]}"
    sql(f'CREATE ROLE "{app}" NOLOGIN')
    try:
        sql("DROP FUNCTION plaudit.unseen(bigint)")
        sql("CREATE FUNCTION plaudit.unseen(p_user_id bigint) RETURNS TABLE (badge text) "
            "LANGUAGE sql AS 'SELECT NULL::text'")
        sql("REVOKE EXECUTE ON FUNCTION plaudit.unseen(bigint) FROM PUBLIC")
        sql(f'GRANT EXECUTE ON FUNCTION plaudit.unseen(bigint), plaudit.check(jsonb) TO "{app}"')
        site.init()
        assert sql("SELECT 'icon' = ANY (proargnames), "
                   "has_function_privilege(%s, oid, 'EXECUTE') FROM pg_proc "
                   "WHERE oid IN ('plaudit.unseen(bigint)'::regprocedure, "
                   "'plaudit.check(jsonb)'::regprocedure)", [app]) == [(True, True)] * 2
        assert sql("SELECT count(*) FROM aclexplode((SELECT proacl FROM pg_proc WHERE oid = "
                   "'plaudit.unseen(bigint)'::regprocedure)) WHERE grantee = 0") == [(0,)]
    finally:
        sql(f'DROP OWNED BY "{app}"')
        sql(f'DROP ROLE "{app}"')
