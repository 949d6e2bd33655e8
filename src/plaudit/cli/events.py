"""The incremental commands: `track` enqueues an event, `run` processes the queue.

Registered on the `plaudit` group in cli/main.py.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

import click

from plaudit.cli.common import App, exit_codes, parse_timestamp
from plaudit.cli.output import count, waiting_once
from plaudit.model.config import is_name
from plaudit.runtime.db import connect
from plaudit.runtime.rows import NewGrant, UserId
from plaudit.runtime.runner import BatchResult, Runner


@click.command(epilog=exit_codes(
    usage="an invalid TYPE, --at or --payload, a TYPE no rule or events: mapping knows"))
@click.argument("event_type", metavar="TYPE")
@click.argument("user_id")
@click.option("--at", "occurred_at", metavar="TIMESTAMP",
              help="When it happened, ISO 8601; without an offset, in the configured "
                   "timezone. Default: now.")
@click.option("--payload", metavar="JSON", help='Event details as a JSON object, e.g. '
              '\'{"post_id": 3}\'; @FILE reads it from a file, - from stdin.')
@click.option("--allow-unknown", is_flag=True,
              help="Enqueue a TYPE that no rule's triggers and no events: mapping name.")
@click.pass_obj
def track(
    app: App, event_type: str, user_id: str, occurred_at: str | None, payload: str | None,
    allow_unknown: bool,
) -> None:
    """Enqueue an event for the next `plaudit run`, and print its event id."""
    if not is_name(event_type):
        raise click.BadParameter(f"{event_type!r} must match [a-z0-9_]+", param_hint="TYPE")
    at = parse_timestamp(occurred_at, app.config.timezone) if occurred_at else None
    details = _payload(payload) if payload is not None else None
    known = {t for rule in app.rules for t in rule.triggers} | {
        e.name for e in app.config.events}
    if event_type not in known and not allow_unknown:
        # a typo would enqueue an event that no rule ever reads
        raise click.BadParameter(
            f"no rule's triggers and no events: mapping name {event_type!r} (known: "
            f"{', '.join(sorted(known)) or 'none'}); --allow-unknown enqueues it anyway",
            param_hint="TYPE")
    with app.engine() as engine:
        click.echo(engine.track(event_type, user_id, at, details))


def _payload(text: str) -> dict[str, Any]:
    # a large payload does not fit on a command line: @path and - (stdin) read it
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        path = text[1:]
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise click.BadParameter(
                f"cannot read {path}: {reason}", param_hint="--payload"
            ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--payload") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    return value


@click.command("run", epilog=exit_codes(
    "a rule failed in a batch (it is marked dirty; the batch and the other rules' grants "
    "are committed)"))
@click.option("--once", "mode", flag_value="once", default=True,
              help="Process the pending events, then exit (the default).")
@click.option("--follow", "mode", flag_value="follow",
              help="Then keep waiting (LISTEN) for new events, reconnecting after a lost "
                   "connection; Ctrl-C stops between batches.")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Events per transaction, and up to as many later events of their users.")
@click.option("--json", "as_json", is_flag=True, help="Print the new grants as JSON lines.")
@click.pass_obj
def run_command(app: App, mode: Literal["once", "follow"], batch_size: int, as_json: bool) -> None:
    """Process pending events: run the rules they trigger, for their users only.

    Each batch is one transaction: its events are consumed together with the grants they
    lead to, so every event counts exactly once. New grants go to stdout and are notified
    on the configured channel. A failing rule does not stop the others; it is marked for
    `plaudit backfill --select state:dirty`, and the command exits 1.
    """
    totals = {"events": 0, "batches": 0, "granted": 0, "moved": 0, "seconds": 0.0}
    failed: dict[str, str] = {}

    def on_batch(result: BatchResult) -> None:
        totals["batches"] += 1
        totals["events"] += result.events
        totals["granted"] += result.granted
        totals["moved"] += result.moved
        totals["seconds"] += result.seconds
        for grant in result.grants:
            click.echo(_grant_line(grant, as_json))
        click.echo(
            f"batch {totals['batches']}: {count(result.events, 'event')}, "
            f"{count(len(result.runs), 'rule')}, {result.granted:,} granted"
            f"{_moved(result.moved)}  {result.seconds:.2f}s",
            err=True,
        )
        for run in result.failed:
            click.echo(f"  failed: {run.message}", err=True)
            failed[run.slug] = run.message or ""

    with app.engine() as engine:
        runner = Runner(engine, batch_size, on_batch)
        with runner.stop_on_signals():
            if mode == "follow":
                with app.engine() as listener:
                    runner.follow(
                        listener.db.conn,
                        on_idle=waiting_once("events"),
                        # a server restart is not the end of a follower: it reconnects
                        reconnect=lambda: connect(app.database_url),
                        on_lost=lambda message: click.echo(message, err=True),
                    )
            else:
                runner.drain()
    if runner.stopping:
        click.echo("stopped", err=True)
    if totals["events"]:
        rate = totals["events"] / totals["seconds"] if totals["seconds"] else 0.0
        click.echo(
            f"processed {count(totals['events'], 'event')} in "
            f"{count(totals['batches'], 'batch')}, "
            f"{totals['granted']:,} granted{_moved(int(totals['moved']))} "
            f"({totals['seconds']:.1f}s, {rate:,.0f} events/s)",
            err=True,
        )
    elif mode == "once":
        click.echo("no pending events", err=True)
    if failed:
        click.echo(
            f"Error: {len(failed)} rule{'s' if len(failed) != 1 else ''} failed "
            f"({', '.join(sorted(failed))}); marked for "
            "`plaudit backfill --select state:dirty`",
            err=True,
        )
        sys.exit(1)


def _moved(n: int) -> str:
    """`, 2 moved earlier`: grants whose date a late event moved (not news: not printed)."""
    return f", {n:,} moved earlier" if n else ""






def _grant_line(grant: NewGrant, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {**grant, "user_id": _json_id(grant["user_id"]),
             "achieved_at": grant["achieved_at"].isoformat()},
            ensure_ascii=False,
        )
    fields = [str(grant["user_id"]), grant["badge"], grant["level"],
              grant["achieved_at"].isoformat(sep=" ")]
    if grant["scope"]:
        fields.append(grant["scope"])
    return "\t".join(fields)


def _json_id(value: UserId) -> int | str:
    return value if isinstance(value, int) else str(value)
