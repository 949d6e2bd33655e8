"""`plaudit lint`: sqlfluff on each rule's query in both modes, at lines of the YAML file."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from plaudit.cli import cli

REPO = Path(__file__).resolve().parents[1]

OFFLINE = "postgresql://nobody@127.0.0.1:1/none"  # lint never connects

MESSY = """\
# A badge for people who talk.   (comments outside the query stay as they are)
slug: messy
name: Messy   # shown to users
kind: count
triggers: [comment_created]
levels:
  - {key: bronze, name: Bronze, threshold: 3}  # three comments

query: |
  select c.author_id as user_id,c.created_at   AS occurred_at
  -- only real comments
  FROM comments c
  WHERE {{ affected('c.author_id') }}
  {% if is_incremental() %}
    and c.id>0
  {% endif %}

# the end
"""


def lint(project, *args):
    return CliRunner().invoke(cli, ["--dsn", OFFLINE, "--project", str(project.path), "lint", *args])


def test_violations_are_reported_at_the_yaml_line_in_both_modes(project):
    project.write(".sqlfluff", "[sqlfluff]\nexclude_rules = LT02, LT09\n")
    project.write("rules/messy.yaml", MESSY)
    result = lint(project)
    assert result.exit_code == 1
    assert result.stdout == (
        "rules/messy.yaml:10:33: LT01 Expected single whitespace between comma ',' and naked "
        "identifier.\n"
        "rules/messy.yaml:10:45: LT01 Expected only single space before 'AS' keyword. "
        "Found '   '.\n"
        "rules/messy.yaml:10:48: CP01 Keywords must be consistently lower case.\n"
        "rules/messy.yaml:12:3: CP01 Keywords must be consistently lower case.\n"
        "rules/messy.yaml:12:17: AL01 Implicit/explicit aliasing of table.\n"
        "rules/messy.yaml:13:3: CP01 Keywords must be consistently lower case.\n"
        "rules/messy.yaml:15:13: LT01 Expected single whitespace between naked identifier and "
        "raw comparison operator '>'. (incremental mode)\n"
        "rules/messy.yaml:15:14: LT01 Expected single whitespace between raw comparison "
        "operator '>' and numeric literal. (incremental mode)\n"
    )
    assert result.stderr == "Error: 8 lint violations\n"


def test_the_projects_sqlfluff_settings_are_honoured(project):
    project.write("rules/messy.yaml", MESSY)
    project.write(
        ".sqlfluff",
        "[sqlfluff]\ndialect = ansi\nexclude_rules = LT01, LT02, LT09, AL01\n\n"
        "[sqlfluff:rules:capitalisation.keywords]\ncapitalisation_policy = upper\n",
    )
    result = lint(project)
    # dialect stays postgres; upper case is now the policy, so the lower-case keywords fail
    assert result.stdout == (
        "rules/messy.yaml:10:3: CP01 Keywords must be upper case.\n"
        "rules/messy.yaml:10:22: CP01 Keywords must be upper case.\n"
        "rules/messy.yaml:15:5: CP01 Keywords must be upper case. (incremental mode)\n"
    )
    project.write(".sqlfluff", "[sqlfluff]\nrules = AL01\n")
    result = lint(project)
    assert result.stdout == "rules/messy.yaml:12:17: AL01 Implicit/explicit aliasing of table.\n"


def test_fix_rewrites_only_the_query_block(project):
    project.write(".sqlfluff", "[sqlfluff]\nexclude_rules = LT02, LT09\n")
    path = project.write("rules/messy.yaml", MESSY)
    result = lint(project, "--fix")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "rules/messy.yaml: fixed 8 violations\n1 rule: no lint violations\n"
    )
    fixed = path.read_text()
    assert fixed == MESSY.replace(
        "  select c.author_id as user_id,c.created_at   AS occurred_at\n",
        "  select c.author_id as user_id, c.created_at as occurred_at\n",
    ).replace("  FROM comments c\n  WHERE", "  from comments as c\n  where").replace(
        "c.id>0", "c.id > 0"
    )
    # the helpers' output is never edited into the template
    assert "{{ affected('c.author_id') }}" in fixed
    again = lint(project, "--fix")
    assert (again.exit_code, again.stderr) == (0, "1 rule: no lint violations\n")
    assert path.read_text() == fixed


def test_fix_leaves_a_query_that_is_not_a_literal_block_alone(project):
    project.write(".sqlfluff", "[sqlfluff]\nrules = CP01\n")
    text = (
        "slug: inline\nname: Inline\nkind: award\n"
        'query: "select p.author_id AS user_id, p.created_at AS achieved_at FROM posts AS p"\n'
    )
    path = project.write("rules/inline.yaml", text)
    result = lint(project, "--fix")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "rules/inline.yaml: not fixed: the query is not a literal block (`query: |`)"
    )
    assert path.read_text() == text
    assert result.stdout.splitlines()[0] == (
        "rules/inline.yaml:4:28: CP01 Keywords must be consistently lower case."
    )


def test_select_limits_the_rules_linted(project):
    project.write(".sqlfluff", "[sqlfluff]\nexclude_rules = LT02, LT09\n")
    project.write("rules/messy.yaml", MESSY)
    project.write(
        "rules/tidy.yaml",
        """
        slug: tidy
        name: Tidy
        kind: award
        query: |
          select p.author_id as user_id, min(p.created_at) as achieved_at
          from posts as p
          group by p.author_id
        """,
    )
    result = lint(project, "--select", "tidy")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "",
        "1 rule: no lint violations\n",
    )
    result = lint(project, "--exclude", "messy")
    assert result.exit_code == 0


def test_the_bundled_rules_pass_lint_with_the_repositorys_sqlfluff():
    result = CliRunner().invoke(cli, ["--dsn", OFFLINE, "--project", str(REPO), "lint"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
