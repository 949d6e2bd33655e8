"""A rule template is bounded: loops, built strings and the rendered query have limits, and
passing one is a clean error at the rule's file:line, never a traceback or gigabytes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from plaudit.cli import cli
from plaudit.errors import RenderError
from plaudit.sqlgen.render import MAX_QUERY, render

OFFLINE = "postgresql://nobody@127.0.0.1:1/none"  # neither command connects


def invoke(project, *args):
    return CliRunner().invoke(cli, ["--dsn", OFFLINE, "--project", str(project.path), *args])


def rule(project, line: str) -> None:
    project.write(
        "rules/probe.yaml",
        f"""
        slug: probe
        name: Probe
        kind: award
        query: |
          SELECT p.author_id AS user_id, p.created_at AS achieved_at
          FROM posts AS p
          WHERE TRUE
          {line}
        """,
    )


CASES = [
    pytest.param(
        "{% for i in range(10**9) %} AND TRUE {% endfor %}",
        "rules/probe.yaml:8: template error: range() of 1,000,000,000 items: a rule template "
        "may loop at most 10,000 times in one range() and 100,000 times in all",
        id="huge-range",
    ),
    pytest.param(
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "rules/probe.yaml:8: template error: range() of 10,000 items: a rule template "
        "may loop at most 10,000 times in one range() and 100,000 times in all",
        id="nested-ranges",
    ),
    pytest.param(
        "AND p.title <> '{{ \"x\" * 10**8 }}'",
        "rules/probe.yaml:8: template error: '*' would build 100,000,000 items: "
        "a rule template may build at most 1,000,000",
        id="string-times-number",
    ),
    pytest.param(
        "AND p.title <> '{{ 3 * [\"x\"] * 10**7 }}'",
        "rules/probe.yaml:8: template error: '*' would build 30,000,000 items: "
        "a rule template may build at most 1,000,000",
        id="list-times-number",
    ),
    pytest.param(
        "AND p.id <> {{ 10**(10**10) }}",
        "rules/probe.yaml:8: template error: '**' would build a number of about 40,000,000,000 "
        "bits: a rule template may build at most 10,000",
        id="huge-power",
    ),
    pytest.param(
        "{% set ns = namespace(s='x' * 900000) %}AND p.title <> '{{ ns.s + ns.s }}'",
        "rules/probe.yaml:8: template error: '+' would build 1,800,000 items: "
        "a rule template may build at most 1,000,000",
        id="string-plus-string",
    ),
    pytest.param(
        "{% set ns = namespace(s='x' * 600000) %}AND p.title <> '{{ ns.s ~ ns.s }}'",
        "rules/probe.yaml:8: template error: '~' would build 1,200,000 items: "
        "a rule template may build at most 1,000,000",
        id="string-tilde-string",
    ),
    pytest.param(
        "{% for a in 'x' * 400 %}{% for b in 'x' * 400 %}{% endfor %}{% endfor %}",
        "rules/probe.yaml:8: template error: more than 100,000 loop steps: "
        "a rule template may loop at most 100,000 times in all",
        id="nested-loops-over-strings",
    ),
    pytest.param(
        "AND p.title <> '{{ 'x'|center(10**8) }}'",
        "rules/probe.yaml:8: template error: 'center' would build 100,000,000 items: "
        "a rule template may build at most 1,000,000",
        id="center",
    ),
    *(
        pytest.param(
            f"AND p.title <> '{{{{ {expression} }}}}'",
            "rules/probe.yaml:8: template error: a format width of a million characters or "
            "more: a rule template may build at most 1,000,000",
            id=f"format-{name}",
        )
        for name, expression in [
            ("filter", "'%0999999999d'|format(1)"),
            ("percent", "'%0999999999d' % 1"),
            ("method", "'{:>999999999}'.format(1)"),
        ]
    ),
    pytest.param(
        "AND p.title <> '{{ ('x' * 900000)|replace('x', 'yy') }}'",
        "rules/probe.yaml:8: template error: 'replace' would build 2,700,000 items: "
        "a rule template may build at most 1,000,000",
        id="replace",
    ),
    pytest.param(
        "AND p.title <> '{{ (['x' * 900000] * 2) | join }}'",
        "rules/probe.yaml:8: template error: 'join' would build 1,800,000 items: "
        "a rule template may build at most 1,000,000",
        id="join",
    ),
    pytest.param(
        "AND p.title <> '{{ lipsum(n=10**7) }}'",
        "rules/probe.yaml:8: 'lipsum' is undefined",
        id="lipsum",
    ),
    pytest.param(
        "{% for i in range(5) %} AND p.title <> '{{ 'x' * 900000 }}'{% endfor %}",
        "rules/probe.yaml:5: the rendered query is 4,500,176 characters: "
        "a rule query may have at most 1,000,000",
        id="rendered-query",
    ),
]


@pytest.mark.parametrize(("line", "message"), CASES)
def test_validate_reports_the_bound_at_the_rules_line(project, line, message):
    rule(project, line)
    result = invoke(project, "validate")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 1
    assert result.stdout == message + "\n"
    assert result.stderr == "Error: 1 problem in rule files\n"


@pytest.mark.parametrize(("line", "message"), CASES)
def test_render_says_it_without_a_traceback(project, line, message):
    rule(project, line)
    message = message.replace(": 'lipsum' is undefined", ": template error: 'lipsum' is undefined")
    result = invoke(project, "render", "probe")
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    where, _, text = message.partition(": ")
    assert result.stderr.startswith(f"Error: {where}: ")
    assert result.stderr.rstrip("\n").endswith(text.removeprefix("template error: "))


def test_what_stays_within_the_bounds_renders(project):
    rule(project, "{% for i in range(3) %} AND p.id <> {{ i * 2 + 2**3 }}{% endfor %}"
                  " AND p.title <> '{{ 'ab' * 3 + 'c' }}'"
                  "{% for w in ['a', 'b'] %} AND p.title <> '{{ loop.index ~ w }}'{% endfor %}"
                  " AND p.title NOT IN ('{{ 'x'|center(5) }}', '{{ '%03d'|format(7) }}',"
                  " '{{ '{:>4}'.format(1) }}', '{{ 'a-b'|replace('-', '+') }}',"
                  " '{{ ['a', 'b']|join(',') }}', '{{ '%d%%' % 5 }}')")
    (probe,) = project.rules()
    assert (
        "AND p.id <> 8 AND p.id <> 10 AND p.id <> 12 AND p.title <> 'abababc' "
        "AND p.title <> '1a' AND p.title <> '2b' "
        "AND p.title NOT IN ('  x  ', '007', '   1', 'a+b', 'a,b', '5%')"
    ) in render(probe, "backfill").query
    assert MAX_QUERY == 1_000_000


def test_the_bounds_are_per_render(project):
    # 60,000 iterations each time: within one render's budget, again and again
    rule(project, "{% for i in range(10000) %}{% endfor %}" * 6)
    (probe,) = project.rules()
    for _ in range(3):
        render(probe, "backfill")
    rule(project, "{% for i in range(10000) %}{% endfor %}" * 11)
    (probe,) = project.rules()
    with pytest.raises(RenderError):
        render(probe, "backfill")


def test_str_methods_that_build_strings_are_bounded(project, run_cli):
    for expression in ('"x".ljust(50000000)', '"x".zfill(10**8)', '"x".center(10**9)',
                       '"ab".replace("a", "a" * 1000).replace("a", "b" * 5000)'):
        project.write("rules/probe.yaml", f"""
            slug: probe
            name: Probe
            kind: award
            query: |
              SELECT 1 AS user_id, now() AS achieved_at -- {{{{ {expression} }}}}
        """)
        result = run_cli(project, "validate")
        assert result.exit_code == 1, expression
        assert "1,000,000" in result.output, result.output
