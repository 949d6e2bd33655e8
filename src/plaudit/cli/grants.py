"""Manual grants: `award` and `revoke`, each with a reason kept in `plaudit.grant_log`.

Registered on the `plaudit` group in cli/main.py.
"""

from __future__ import annotations

import sys

import click

from plaudit.cli.common import App, F, exit_codes, parse_timestamp


def _grant(slug: str, level: str, scope: str) -> str:
    return f"{slug}/{level}" + (f" [{scope}]" if scope else "")


def _reason_option(f: F) -> F:
    return click.option(
        "--reason", required=True, metavar="TEXT", help="Why (kept in plaudit.grant_log)."
    )(f)


@click.command(epilog=exit_codes(
    usage="an unknown badge or level, an empty --reason or an invalid --at"))
@click.argument("slug")
@click.argument("user_id")
@click.option("--level", metavar="KEY", help="The level to grant (needed if there are several).")
@click.option("--scope", default="", metavar="SCOPE", help="Its scope, e.g. a challenge id.")
@_reason_option
@click.option("--at", "achieved_at", metavar="TIMESTAMP",
              help="When it was earned, ISO 8601; without an offset, in the configured "
                   "timezone. Default: now.")
@click.pass_obj
def award(
    app: App,
    slug: str,
    user_id: str,
    level: str | None,
    scope: str,
    reason: str,
    achieved_at: str | None,
) -> None:
    """Grant a badge by hand (source 'manual'). Rules never move, revoke or replace it.

    A grant the user already holds is left as it is. An award lifts a revocation of the
    same grant, and the rules that read this badge re-check the user at once."""
    at = parse_timestamp(achieved_at, app.config.timezone) if achieved_at else None
    with app.engine() as engine:
        row = engine.award(slug, user_id, reason, level=level, scope=scope, achieved_at=at)
    grant = _grant(slug, row["level"], row["scope"])
    if row["outcome"] == "awarded":
        click.echo(f"awarded {grant} to user {user_id}", err=True)
    else:
        click.echo(
            f"user {user_id} already holds {grant} ({row['source']} grant, achieved "
            f"{row['achieved_at']:%Y-%m-%d %H:%M}); nothing changed",
            err=True,
        )


@click.command(epilog=exit_codes("the user held no grant to revoke"))
@click.argument("slug")
@click.argument("user_id")
@click.option("--level", metavar="KEY", help="Only this level (default: every level).")
@click.option("--scope", metavar="SCOPE", help="Only this scope (default: every scope).")
@_reason_option
@click.pass_obj
def revoke(
    app: App, slug: str, user_id: str, level: str | None, scope: str | None, reason: str
) -> None:
    """Remove a user's grants of a badge, manual or by a rule; exit 1 if there were none.

    A revocation sticks: no rule grants it again until `plaudit award` gives it back. The
    rules that read this badge re-check the user at once."""
    with app.engine() as engine:
        rows = engine.revoke(slug, user_id, reason, level=level, scope=scope)
    if not rows:
        which = _grant(slug, level, scope or "") if level else slug
        click.echo(f"Error: user {user_id} holds no {which} grant to revoke", err=True)
        sys.exit(1)
    for row in rows:
        grant = _grant(slug, row["level"], row["scope"])
        click.echo(f"revoked {grant} from user {user_id} ({row['source']} grant)", err=True)
    click.echo(
        "note: no rule grants it again; `plaudit award` gives it back", err=True
    )
