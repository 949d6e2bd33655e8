"""`plaudit export`: the grants as JSON lines, CSV or Open Badges 3.0 credentials, to stdout,
a file or a folder (docs/operations.md, "Exports").

Registered on the `plaudit` group in cli/main.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TextIO

import click

from plaudit.cli.common import App, exit_codes, parse_timestamp, select_option
from plaudit.errors import ConfigError
from plaudit.runtime.export import (
    DEFINITIONS_FILE,
    FILE_NAMES,
    FORMATS,
    Badge,
    Csv,
    Encoder,
    ExportFormat,
    Filters,
    JsonLines,
    definitions,
    definitions_json,
    grants,
    snapshot,
    write,
)

# a progress line every this many grants (on a terminal, or with -v)
PROGRESS_EVERY = 100_000
VALIDATED_PROGRESS_EVERY = 1_000  # validating, a few hundred credentials a second
NO_ISSUER = (
    "--format ob3 needs an issuer: add an `openbadges:` section to plaudit.yaml, e.g.\n"
    "  openbadges:\n"
    "    issuer: {id: https://example.org, name: Example, url: https://example.org}\n"
    "    subject: https://example.org/users/{user_id}\n"
    "(docs/configuration.md, \"Open Badges\")"
)


@click.command("export", epilog=exit_codes(
    "--validate found a credential that is not valid Open Badges 3.0",
    usage="a --since that is not a date, --validate without --format ob3, --format ob3 "
          "without plaudit.yaml's openbadges: section, or an --out that cannot be written"))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl",
              show_default=True,
              help="jsonl: a JSON object per grant; csv: RFC 4180 with a header row; ob3: "
                   "an Open Badges 3.0 OpenBadgeCredential per grant, as JSON lines.")
@select_option
@click.option("--user", "user_id", metavar="USER_ID", help="Only this user's grants.")
@click.option("--since", metavar="DATE",
              help="Only the grants achieved on or after DATE (2024-05-01, or an ISO 8601 "
                   "timestamp); without an offset, in plaudit.yaml's timezone.")
@click.option("--out", type=click.Path(), metavar="PATH",
              help="A file; or a folder (one that exists, or PATH ending in /), which gets "
                   "grants.jsonl, grants.csv or credentials.jsonl, and definitions.json. "
                   "Default: stdout.")
@click.option("--validate", is_flag=True,
              help="With --format ob3: expand each credential with JSON-LD against the "
                   "packaged VC 2.0 and Open Badges 3.0 contexts (offline) and check its "
                   "required fields; stop at the first invalid one. Slow: some 200 "
                   "credentials a second.")
@click.pass_obj
def export_command(
    app: App,
    fmt: ExportFormat,
    selectors: tuple[str, ...],
    user_id: str | None,
    since: str | None,
    out: str | None,
    validate: bool,
) -> None:
    """Export grants as JSON lines, CSV or Open Badges 3.0 credentials, streamed.

    One line per grant, by user, badge, level and scope, with user_id, badge, level, scope,
    achieved_at, awarded_at (ISO 8601, UTC), value, points and meta. A folder also gets
    definitions.json: every badge with its levels. The export reads one snapshot and
    writes nothing; the same database gives the same bytes. Credentials are not signed."""
    if validate and fmt != "ob3":
        raise click.BadParameter("only --format ob3 is validated", param_hint="--validate")
    if fmt == "ob3" and app.config.openbadges is None:
        raise ConfigError(NO_ISSUER)
    moment = parse_timestamp(since, app.config.timezone, "--since") if since else None
    badges = None
    if selectors or app.excludes:
        badges = [rule.slug for rule in app.select(selectors)]
    filters = Filters(badges, user_id, moment)
    progress = _progress if app.verbose or sys.stderr.isatty() else None
    try:
        with app.engine() as engine, snapshot(engine.db):
            defined = definitions(engine.db)
            encoder = _encoder(app, fmt, defined, validate)
            with _output(out, fmt) as (stream, folder):
                with closing(grants(engine.db, filters)) as rows:
                    written = write(rows, encoder, stream.write,
                                    VALIDATED_PROGRESS_EVERY if validate else PROGRESS_EVERY,
                                    progress)
                if folder is not None:  # last: a failed export leaves no definitions either
                    (folder / DEFINITIONS_FILE).write_text(
                        definitions_json(defined), encoding="utf-8")
    except BrokenPipeError:  # `plaudit export | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return
    _report(written.grants, written.lines, fmt, out, filters)


def _encoder(app: App, fmt: ExportFormat, defined: list[Badge], validate: bool) -> Encoder:
    if fmt == "jsonl":
        return JsonLines()
    if fmt == "csv":
        return Csv()
    from plaudit.runtime.openbadges import Credentials

    assert app.config.openbadges is not None
    return Credentials(defined, app.config.openbadges, validate)


def _report(
    read: int, lines: int, fmt: ExportFormat, out: str | None, filters: Filters
) -> None:
    """What was exported, on stderr; an empty export says why it may be."""
    where = f" to {out}" if out is not None else ""
    click.echo(f"exported {lines:,} grant{'s' if lines != 1 else ''}"
               f"{' as credentials' if fmt == 'ob3' else ''}{where}", err=True)
    if read > lines:
        click.echo(f"note: {read - lines:,} grant{'s' if read - lines != 1 else ''} dated "
                   "infinity or -infinity left out: a credential needs a real validFrom",
                   err=True)
    if read == 0 and filters.user_id is not None:
        click.echo(f"note: user {filters.user_id} holds no grant these options pick "
                   "(an unknown user, or other filters): the export is empty", err=True)


def _progress(count: int) -> None:
    click.echo(f"  {count:,} grants exported", err=True)


@contextmanager
def _output(out: str | None, fmt: ExportFormat) -> Iterator[tuple[TextIO, Path | None]]:
    """Where the lines go, and the folder for definitions.json (None: a single stream).
    A file is written under a temporary name and renamed when complete: a failed export
    leaves no half file behind."""
    if out is None:
        yield sys.stdout, None
        return
    # a trailing slash says "folder" (Path would drop it)
    folder = Path(out) if out.endswith(("/", os.sep)) or Path(out).is_dir() else None
    target = folder / FILE_NAMES[fmt] if folder is not None else Path(out)
    partial = target.with_name(target.name + ".partial")
    try:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        stream = partial.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with stream:
            yield stream, folder
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
