"""The analyst's commands: `validate`, `lint`, `test` and `preview` (deploy is in cli/rules.py).

Registered on the `plaudit` group in cli/main.py.
Findings are data: `file:line: message` lines on stdout; the verdict goes to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from plaudit.authoring.ruletests import Outcome
from plaudit.cli.common import (
    App,
    F,
    exit_codes,
    json_option,
    json_text,
    param_option,
    parse_params,
    select_option,
)
from plaudit.cli.output import count, preview_text


def _verdict(
    problems: Sequence[object], what: str, ok: str, where: str = "", as_json: bool = False
) -> None:
    """Print the problems (stdout; with `as_json` one JSON array of them) and the verdict
    (stderr); exit 1 if there are any."""
    if as_json:
        click.echo(json_text(list(problems)))
    for problem in problems if not as_json else ():
        click.echo(str(problem))
    if problems:
        click.echo(f"Error: {count(len(problems), what)}{where}", err=True)
        sys.exit(1)
    click.echo(ok, err=True)


def paths_argument(f: F) -> F:
    """PATH...: rule files, as sqlfluff takes them."""
    return click.argument(
        "paths", nargs=-1, metavar="[PATH]...",
        type=click.Path(exists=True, dir_okay=False, path_type=Path))(f)


def _rule_files(app: App, paths: Sequence[Path]) -> set[Path]:
    """The given PATHs, each a rule file of the project's rules folder."""
    rules_dir = app.config.rules_dir.resolve()
    files = {path.resolve() for path in paths}
    for path in sorted(files):
        if path.parent != rules_dir or path.suffix not in (".yaml", ".yml"):
            raise click.BadParameter(
                f"{path} is not a rule file of {app.config.rules_dir}", param_hint="PATH")
    return files




@click.command(epilog=exit_codes(
    "a rule file has problems (with --db, also its columns against the database)"))
@click.option(
    "--db",
    "with_db",
    is_flag=True,
    help="Also check each query's result columns and types against the database.",
)
@json_option
@paths_argument
@click.pass_obj
def validate(app: App, with_db: bool, as_json: bool, paths: tuple[Path, ...]) -> None:
    """Check the rule files offline: YAML, templates, params, modes, badge() references,
    one SELECT with the columns its kind needs. Every problem as file:line. With PATHs,
    only those rule files (the others are read for their badge() references)."""
    from plaudit.authoring.validate import validate as run_validation

    result = run_validation(app.config)
    if paths:
        files = _rule_files(app, paths)
        result.rules = [r for r in result.rules if r.path.resolve() in files]
        result.problems = [p for p in result.problems
                           if (app.project_dir / p.file).resolve() in files]
        result.warnings = [p for p in result.warnings
                           if (app.project_dir / p.file).resolve() in files]
    problems = list(result.problems)
    if with_db and result.rules:
        from plaudit.authoring.validate import without_slugs
        from plaudit.runtime.contract import check_contracts

        with app.engine() as engine:
            found = check_contracts(engine.db, app.config, result.rules)
        problems = sorted(
            set(problems) | set(without_slugs(found, result.rules)),
            key=lambda p: (p.file, p.line, p.message),
        )
    for warning in result.warnings:
        click.echo(str(warning), err=True)
    checked = " and their contracts with the database" if with_db else ""
    ok = f"{count(len(result.rules), 'rule')}{checked}: ok"
    _verdict(problems, "problem", ok, " in rule files", as_json)


@click.command(epilog=exit_codes("violations remain, or a rule file is invalid"))
@select_option
@click.option("--fix", is_flag=True, help="Rewrite the query blocks to fix what can be fixed.")
@json_option
@paths_argument
@click.pass_obj
def lint(
    app: App, selectors: tuple[str, ...], fix: bool, as_json: bool, paths: tuple[Path, ...]
) -> None:
    """Lint each rule's query with sqlfluff (dialect postgres, the project's .sqlfluff), in
    every mode it runs in; violations as file:line of the rule file. Offline. With PATHs,
    only those rule files."""
    from plaudit.authoring.lint import lint as run_lint

    if paths:  # those files alone, as sqlfluff lints the files it is given
        from plaudit.model.rules import load_rule

        rules = [load_rule(path, app.project_dir) for path in sorted(_rule_files(app, paths))]
    else:
        rules = app.select(selectors)
    result = run_lint(app.config, rules, fix=fix)
    for file, fixed in result.fixed.items():
        click.echo(f"{file}: fixed {count(fixed, 'violation')}", err=True)
    for message in result.unfixable:
        click.echo(message, err=True)
    ok = f"{count(len(rules), 'rule')}: no lint violations"
    _verdict(result.violations, "lint violation", ok, as_json=as_json)


@click.command("test", epilog=exit_codes(
    "a case failed or could not run, or a rule file or test case file is invalid"))
@select_option
@json_option
@click.pass_obj
def test_command(app: App, selectors: tuple[str, ...], as_json: bool) -> None:
    """Run the rules' test cases (given rows, expected grants) in every mode, in a scratch
    schema on the configured database that is rolled back afterwards."""
    from zoneinfo import ZoneInfo

    from plaudit.authoring.ruletests import format_failure, run_cases
    from plaudit.authoring.testcases import load_cases
    from plaudit.errors import RuleError

    rules = app.select(selectors)
    cases, problems = load_cases(app.config, rules)
    if problems:
        raise RuleError(problems)
    untested = sorted({r.slug for r in rules} - {c.rule.slug for c in cases})
    if untested:
        click.echo(f"rules without test cases: {', '.join(untested)}", err=True)
    with app.engine() as engine:
        outcomes = run_cases(engine.db.conn, app.config, app.rules, cases)
    zone = ZoneInfo(app.config.timezone)
    failed = sum(1 for case in cases if not all(o.passed for o in outcomes if o.case is case))
    if as_json:
        click.echo(json_text([_outcome(o) for o in outcomes]))
        if failed:
            sys.exit(1)
        return
    failed = 0
    for case in cases:
        mine = [o for o in outcomes if o.case is case]
        if all(o.passed for o in mine):
            click.echo(f"{case.file}:{case.line}: {case.id} passed")
            continue
        failed += 1
        for outcome in mine:
            if not outcome.passed:
                click.echo(format_failure(outcome, zone))
    click.echo(f"{len(cases) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


@click.command(epilog=exit_codes(
    "a rule file or the rule's query is invalid (its columns against the database too), "
    "or the query fails",
    usage="an unknown rule, or a --param that is unknown or not of its declared type"))
@click.argument("slug")
@param_option
@click.option("--plan", "plans", is_flag=True,
              help="Also print the query plans (backfill, and incremental for a rule with "
                   "triggers).")
@json_option
@click.pass_obj
def preview(app: App, slug: str, params: tuple[str, ...], plans: bool, as_json: bool) -> None:
    """Show what a backfill of one rule would do: grants it would add and grants that exist
    per level, a sample of the new ones, whether incremental runs read a table whole, and
    with --plan the query plans. Writes nothing."""
    from plaudit.authoring.preview import preview as run_preview

    rule = app.rule(slug)
    given = parse_params(params)
    with app.engine() as engine:
        result = run_preview(engine, rule, given)
    if as_json:
        click.echo(json_text({
            "rule": rule.slug, "would_add": result.would_add, "total": result.total,
            "existing": result.existing, "sample": result.sample, "plan": result.plan,
            "incremental_plan": result.incremental_plan, "seq_scans": result.seq_scans,
            "citus": None if result.route is None else {
                "runs_on": result.route[0], "reason": result.route[1],
                "incremental_problem": result.incremental_problem}}))
    else:
        click.echo(preview_text(result, plans))


def _outcome(outcome: Outcome) -> dict[str, Any]:
    """One case in one mode, for `test --json`."""
    return {
        "case": outcome.case.id, "file": outcome.case.file, "line": outcome.case.line,
        "mode": outcome.mode, "passed": outcome.passed, "error": outcome.error,
        "expected": [_grant(g) for g in outcome.expected],
        "actual": [_grant(g) for g in outcome.actual],
    }


def _grant(grant: tuple[str, str, str, datetime]) -> dict[str, Any]:
    user_id, level, scope, achieved_at = grant
    return {"user_id": user_id, "level": level, "scope": scope, "achieved_at": achieved_at}
