"""Exports (issue 15, first part): every grant as JSON lines, CSV (RFC 4180) or Open Badges
3.0 credentials, checked against user_badge read by plain SQL; filters; the folder layout;
determinism; and each credential expanded with JSON-LD (pyld) against the official contexts,
offline, with a positive control (the specification's example) and a negative one."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

import plaudit
from openbadges_check import (
    CONTEXTS,
    EXAMPLE,
    dropped_keys,
    expand_offline,
    missing_required,
)
from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.export import GRANT_COLUMNS

REPO = Path(__file__).resolve().parents[1]
BADGES = {
    "helper": """
        slug: helper
        name: Helper
        description: Answers questions, again and again.
        kind: award
        tags: [community, help]
        levels:
          - {key: bronze, name: Bronze, points: 10, icon: helper/bronze.png}
          - {key: silver, name: Silver, points: 30, icon: "https://cdn.example.org/silver.svg"}
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at, 'bronze' AS level
          FROM users AS u WHERE false
    """,
    "talker": """
        slug: talker
        name: Talker
        kind: count
        triggers: [comment_created]
        levels:
          - {key: bronze, name: Chatty, threshold: 2, points: 5}
          - {key: silver, name: Talker, threshold: 10, points: 15}
        query: |
          SELECT c.author_id AS user_id, c.created_at AS occurred_at
          FROM comments AS c
          WHERE {{ affected('c.author_id') }}
    """,
}
OPENBADGES = """
timezone: Europe/Berlin
openbadges:
  issuer: {id: "https://badges.example.org/issuer", name: Example Community, url: "https://example.org"}
  subject: "https://example.org/users/{user_id}"
  image_base: "https://example.org/icons/"
"""
# (user, badge, level, scope, achieved_at, value, meta): scopes and meta with the characters
# CSV must quote, exact decimals, NULLs, a user id past 32 bits
GRANTS = [
    (1, "helper", "bronze", "", "2024-03-04 09:00+00", None, None),
    (1, "helper", "silver", "", "2024-03-06 10:00:00.123456+00", "12.5",
     '{"note": "a, b"}'),
    (2, "talker", "bronze", 'challenge "7", round 1', "2024-03-05 23:30+00", "0.1",
     '{"text": "line 1\\nline 2", "n": 12345678901234567890.123456789}'),
    (2, "helper", "bronze", "multi\nline\r\nscope", "2024-03-07 08:00+00", "3", "[1, 2]"),
    (2, "talker", "silver", "", "2024-03-08 12:00+00", "10", None),
    (10_000_000_000, "talker", "bronze", "zürich", "2024-02-01 00:00+00", "-0.000001",
     '{"é": "ü"}'),
]
# plain SQL over user_badge: what every export must show
TRUTH = """
SELECT ub.user_id, ub.badge, ub.level, ub.scope, ub.achieved_at, ub.awarded_at, ub.value,
       l.points, ub.meta::text  -- as text: psycopg would read its numbers as floats
FROM plaudit.user_badge AS ub
JOIN plaudit.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
{where}
ORDER BY ub.user_id, ub.badge, ub.level, ub.scope
"""


@pytest.fixture
def granted(project, engine_for, sql):
    project.write("plaudit.yaml", OPENBADGES)
    for slug, text in BADGES.items():
        project.write(f"rules/{slug}.yaml", text)
    deploy_rules(engine_for(project), project.rules())
    for user, badge, level, scope, at, value, meta in GRANTS:
        sql("INSERT INTO plaudit.user_badge (user_id, badge, level, scope, achieved_at, "
            "awarded_at, value, meta, source) VALUES (%s, %s, %s, %s, %s, "
            "%s::timestamptz + interval '1 hour', %s, %s, 'manual')",
            [user, badge, level, scope, at, at, value, meta])
    return project


def exact(text: str):
    """JSON with its decimals as written."""
    return json.loads(text, parse_float=Decimal)


def truth(sql, where: str = "", params=None):
    return sql(TRUTH.format(where=where), params)


def export(run_cli, project, *args: str) -> str:
    result = run_cli(project, "export", *args)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes.decode()  # as written: .stdout would turn CRLF into LF


def test_jsonl_holds_every_grant_and_column_as_user_badge_does(granted, run_cli, sql):
    lines = export(run_cli, granted).splitlines()
    rows = truth(sql)
    assert len(lines) == len(rows) == len(GRANTS)
    for line, row in zip(lines, rows, strict=True):
        # parse_float: the exact decimal written, not a float near it
        grant = json.loads(line, parse_float=Decimal)
        assert list(grant) == list(GRANT_COLUMNS)
        user, badge, level, scope, achieved, awarded, value, points, meta = row
        assert (grant["user_id"], grant["badge"], grant["level"], grant["scope"]) == (
            user, badge, level, scope)
        assert datetime.fromisoformat(grant["achieved_at"]) == achieved
        assert datetime.fromisoformat(grant["awarded_at"]) == awarded
        assert grant["achieved_at"].endswith("+00:00")  # UTC, whatever the timezone
        assert (None if grant["value"] is None else Decimal(grant["value"])) == value
        assert grant["points"] == points
        assert grant["meta"] == (None if meta is None else exact(meta))
    # the 30-digit decimal in meta survives as written
    assert '"n": 12345678901234567890.123456789' in lines[3]


def test_csv_is_rfc_4180_and_holds_the_same_values(granted, run_cli, sql):
    text = export(run_cli, granted, "--format", "csv")
    # every record ends in CRLF; the CRLF inside the quoted scope is the scope's own
    assert text.startswith(",".join(GRANT_COLUMNS) + "\r\n") and text.endswith("\r\n")
    assert '"challenge ""7"", round 1"' in text
    header, *records = list(csv.reader(io.StringIO(text, newline="")))
    assert header == list(GRANT_COLUMNS)
    rows = truth(sql)
    assert len(records) == len(rows)
    for record, row in zip(records, rows, strict=True):
        user, badge, level, scope, achieved, awarded, value, points, meta = row
        assert record[:4] == [str(user), badge, level, scope]
        assert datetime.fromisoformat(record[4]) == achieved
        assert datetime.fromisoformat(record[5]) == awarded
        assert record[6] == ("" if value is None else record[6])
        assert (Decimal(record[6]) if record[6] else None) == value
        assert int(record[7]) == points
        assert (exact(record[8]) if record[8] else None) == (meta and exact(meta))


@pytest.mark.parametrize("args, where, params", [
    (["--select", "helper"], "WHERE ub.badge = 'helper'", None),
    (["--select", "tag:community", "--user", "2"],
     "WHERE ub.badge = 'helper' AND ub.user_id = 2", None),
    (["--exclude", "helper"], "WHERE ub.badge <> 'helper'", None),
    (["--user", "10000000000"], "WHERE ub.user_id = 10000000000", None),
    # a date without an offset is in plaudit.yaml's timezone: 2024-03-06 00:00 in Berlin is
    # 2024-03-05 23:00 UTC, so the grant of 23:30 UTC is in
    (["--since", "2024-03-06"], "WHERE ub.achieved_at >= %s",
     ["2024-03-05 23:00+00"]),
    (["--since", "2024-03-06T10:00:00+00:00", "--select", "helper"],
     "WHERE ub.achieved_at >= %s AND ub.badge = 'helper'", ["2024-03-06 10:00+00"]),
], ids=["select", "tag-and-user", "exclude", "user", "since-date", "since-timestamp"])
def test_filters_pick_what_plain_sql_picks(granted, run_cli, sql, args, where, params):
    keys = [tuple(json.loads(line)[c] for c in ("user_id", "badge", "level", "scope"))
            for line in export(run_cli, granted, *args).splitlines()]
    expected = [tuple(row[:4]) for row in truth(sql, where, params)]
    assert keys == expected and expected


def test_an_unknown_user_is_an_empty_export_that_says_so(granted, run_cli):
    result = run_cli(granted, "export", "--user", "99")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr.splitlines() == [
        "exported 0 grants",
        "note: user 99 holds no grant these options pick (an unknown user, or other "
        "filters): the export is empty"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "ob3"])
def test_two_exports_are_byte_identical(granted, run_cli, tmp_path, fmt):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        export(run_cli, granted, "--format", fmt, "--out", f"{folder}/")
    grants = {"jsonl": "grants.jsonl", "csv": "grants.csv", "ob3": "credentials.jsonl"}[fmt]
    files = sorted(p.name for p in first.iterdir())
    assert files == sorted(["definitions.json", grants])
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    # stdout is the same stream as the folder's file
    assert export(run_cli, granted, "--format", fmt).encode() == (first / grants).read_bytes()


def test_the_folder_holds_the_definitions(granted, run_cli, tmp_path, sql):
    out = tmp_path / "export"
    out.mkdir()  # an existing folder needs no trailing slash
    result = run_cli(granted, "export", "--out", str(out))
    assert result.stderr == f"exported {len(GRANTS)} grants to {out}\n"
    definitions = json.loads((out / "definitions.json").read_text())
    levels = sql("SELECT b.slug, b.name, b.description, b.kind, b.tags, l.key, l.name, "
                 "l.threshold, l.points, l.icon FROM plaudit.badge AS b JOIN "
                 "plaudit.badge_level AS l ON l.badge = b.slug ORDER BY b.slug, l.position")
    assert [(b["slug"], b["name"], b["description"], b["kind"], b["tags"], lv["key"],
             lv["name"], lv["threshold"], lv["points"], lv["icon"])
            for b in definitions["badges"] for lv in b["levels"]] == [
        (*row[:7], None if row[7] is None else int(row[7]), *row[8:]) for row in levels]


def test_out_file_is_one_stream_and_no_partial_file_is_left(granted, run_cli, tmp_path):
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "grants.csv"
    export(run_cli, granted, "--format", "csv", "--out", str(target))
    assert sorted(p.name for p in target.parent.iterdir()) == ["grants.csv"]
    # a CRLF per record and the header's, and the one inside a scope
    assert target.read_bytes().count(b"\r\n") == len(GRANTS) + 2
    missing = run_cli(granted, "export", "--out", str(tmp_path / "no" / "such.jsonl"))
    assert missing.exit_code == 2
    assert missing.stderr.startswith(f"Error: cannot write {tmp_path}/no/such.jsonl: ")


@pytest.mark.parametrize("args, config, says", [
    (["--since", "yesterday"], None,
     "Invalid value for --since: 'yesterday' is not an ISO 8601 timestamp"),
    (["--validate"], None, "Invalid value for --validate: only --format ob3 is validated"),
    (["--format", "ob3"], "timezone: UTC\n",
     "Error: --format ob3 needs an issuer: add an `openbadges:` section to plaudit.yaml"),
    (["--select", "nothing_like_it"], None, "Error: --select 'nothing_like_it' matches no rule"),
], ids=["since", "validate-jsonl", "no-issuer", "select"])
def test_bad_options_exit_2(granted, run_cli, args, config, says):
    if config is not None:
        granted.write("plaudit.yaml", config)
    result = run_cli(granted, "export", *args)
    assert result.exit_code == 2 and says in result.stderr, result.output


# -- Open Badges 3.0 -----------------------------------------------------------------------

NAMESPACE = uuid.UUID("3b3282b5-ac65-414a-8c42-5ac6614c2037")  # docs/operations.md


def name_uuid(*parts):
    text = json.dumps([str(p) for p in parts], ensure_ascii=False)
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, text)}"


def credentials(run_cli, project, *args):
    return [json.loads(line) for line in
            export(run_cli, project, "--format", "ob3", *args).splitlines()]


def test_every_credential_expands_without_losing_a_property(granted, run_cli):
    found = credentials(run_cli, granted)
    assert len(found) == len(GRANTS)
    for credential in found:
        assert dropped_keys(credential) == set(), credential["id"]
        assert missing_required(credential) == [], credential["id"]
        [node] = expand_offline(credential)
        assert "https://purl.imsglobal.org/spec/vc/ob/vocab.html#OpenBadgeCredential" in (
            node["@type"])


def test_the_specifications_example_passes_and_a_bogus_property_fails():
    assert dropped_keys(EXAMPLE) == set() and missing_required(EXAMPLE) == []
    bogus = json.loads(json.dumps(EXAMPLE))
    bogus["credentialSubject"]["achievement"]["bogus"] = "not in any context"
    bogus["level"] = "neither"
    assert dropped_keys(bogus) == {"credentialSubject.achievement.bogus", "level"}
    del bogus["validFrom"], bogus["credentialSubject"]["achievement"]["criteria"]
    assert missing_required(bogus) == ["validFrom", "credentialSubject.achievement.criteria"]


def test_a_credential_says_who_earned_what_when(granted, run_cli, sql):
    by_id = {c["id"]: c for c in credentials(run_cli, granted)}
    issuer = "https://badges.example.org/issuer"
    for user, badge, level, scope, *_ in GRANTS:
        credential = by_id.pop(name_uuid(issuer, user, badge, level, scope))
        [(achieved,)] = sql("SELECT achieved_at FROM plaudit.user_badge WHERE user_id = %s "
                            "AND badge = %s AND level = %s AND scope = %s",
                            [user, badge, level, scope])
        assert datetime.fromisoformat(credential["validFrom"]) == achieved
        assert credential["validFrom"].endswith("Z")
        assert credential["credentialSubject"]["id"] == f"https://example.org/users/{user}"
        assert credential["issuer"] == {"id": issuer, "type": ["Profile"],
                                        "name": "Example Community", "url": "https://example.org"}
    assert by_id == {}  # one credential per grant, ids distinct
    [silver] = [c for c in credentials(run_cli, granted, "--select", "helper", "--user", "1")
                if c["name"] == "Helper: Silver"]
    assert silver["credentialSubject"]["achievement"] == {
        "id": name_uuid(issuer, "helper", "silver"),
        "type": ["Achievement"],
        "achievementType": "Badge",
        "name": "Helper: Silver",
        "description": "Answers questions, again and again.",
        "criteria": {"narrative": "Answers questions, again and again."},
        "image": {"id": "https://cdn.example.org/silver.svg", "type": "Image",
                  "caption": "Helper: Silver"},
        "tag": ["community", "help"],
    }


@pytest.mark.parametrize("select, achievement", [
    # a relative icon after image_base; no description: one made of the names
    ("helper", {"image": {"id": "https://example.org/icons/helper/bronze.png", "type": "Image",
                          "caption": "Helper: Bronze"}}),
    ("talker", {"description": "Talker: Chatty, a badge of Example Community.",
                "criteria": {"narrative": "Chatty: count of at least 2."}}),
])
def test_achievements_of_first_levels(granted, run_cli, select, achievement):
    [first, *_] = credentials(run_cli, granted, "--select", select, "--user", "2")
    shown = first["credentialSubject"]["achievement"]
    assert {key: shown[key] for key in achievement} == achievement
    assert first["name"].endswith(")")  # the scope: these grants have one


def test_validate_passes_valid_credentials_and_stops_at_an_invalid_one(
        granted, run_cli, monkeypatch):
    result = run_cli(granted, "export", "--format", "ob3", "--validate")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(GRANTS)

    from plaudit.runtime import openbadges
    made = openbadges.achievement
    monkeypatch.setattr(openbadges, "achievement",
                        lambda *args: {**made(*args), "bogus": "x"})
    result = run_cli(granted, "export", "--format", "ob3", "--validate")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: the credential of user 1's helper/bronze (urn:uuid:")
    assert result.stderr.endswith(
        "is not valid Open Badges 3.0: property 'bogus' is not defined by the contexts "
        "(JSON-LD expansion drops it)\n")


def test_a_grant_dated_infinity_has_no_credential(granted, run_cli, sql):
    sql("UPDATE plaudit.user_badge SET achieved_at = 'infinity' WHERE user_id = 1 "
        "AND level = 'bronze'")
    result = run_cli(granted, "export", "--format", "ob3")
    assert len(result.stdout.splitlines()) == len(GRANTS) - 1
    assert result.stderr.splitlines()[-1] == (
        "note: 1 grant dated infinity or -infinity left out: a credential needs a real "
        "validFrom")
    [line, *_] = export(run_cli, granted).splitlines()
    assert json.loads(line)["achieved_at"] == "infinity"


# shared/ beside the repository (CI copies it there too): the official files, when present
SHARED = REPO.parent / "shared" / "standards" / "openbadges-3.0"


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no {SHARED} to compare with")
@pytest.mark.parametrize("name, copy", [
    ("credentials-v2.jsonld", CONTEXTS / "credentials-v2.jsonld"),
    ("context-3.0.3.json", CONTEXTS / "context-3.0.3.json"),
    ("example-basic-credential.json", Path(__file__).parent / "openbadges" /
     "example-basic-credential.json"),
])
def test_the_packaged_contexts_are_the_official_ones(name, copy):
    assert copy.read_bytes() == (SHARED / name).read_bytes()


@pytest.mark.slow
def test_memory_stays_flat_from_10k_to_100k_grants(granted, dsn, sql, tmp_path):
    """Streamed, never fetched whole: ten times the grants, the same peak RSS (a fetchall
    of 100k grants would add some 100 MB). Measured by bench/peak.py, in a process of its
    own; at 100k and 1M grants it is 45 MiB both (docs/operations.md, "Exports")."""
    for badge, count in (("helper", 10_000), ("talker", 100_000)):
        sql("INSERT INTO plaudit.user_badge (user_id, badge, level, scope, achieved_at, "
            "value, meta, source) SELECT 100 + g, %s, 'bronze', '', timestamptz '2024-01-01' "
            "+ g * interval '1 minute', g / 7.0, jsonb_build_object('n', g), 'manual' "
            "FROM generate_series(1, %s) AS g", [badge, count])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(plaudit.__file__).parents[1]), str(REPO)])}
    peaks = {}
    for badge in ("helper", "talker"):
        out = tmp_path / f"{badge}.peak"
        subprocess.run(
            [sys.executable, "-m", "bench.peak", str(out), "--dsn", dsn, "--project",
             str(granted.path), "export", "--select", badge, "--out",
             str(tmp_path / f"{badge}.jsonl")], check=True, env=env, cwd=REPO,
            capture_output=True)
        peaks[badge] = int(out.read_text())
        assert len((tmp_path / f"{badge}.jsonl").read_bytes().splitlines()) > 10_000
    assert peaks["talker"] - peaks["helper"] < 10 * 2**20, peaks
