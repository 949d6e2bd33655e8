"""`plaudit deliver`: the outbox posted to the webhooks of plaudit.yaml.

Registered on the `plaudit` group in cli/main.py.
"""

from __future__ import annotations

import sys
from typing import Literal

import click

from plaudit.cli.common import App, exit_codes
from plaudit.cli.output import count, waiting_once
from plaudit.runtime.delivery import (
    Deliverer,
    DeliveryBatch,
    check_deployed,
    retry_dead,
    select_endpoints,
)
from plaudit.runtime.webhook import Outcome


@click.command("deliver", epilog=exit_codes(
    "notices became dead letters in this run (delivery gave up on them; `plaudit status` "
    "lists them)",
    usage="no webhooks in plaudit.yaml, a --webhook it does not have, a secret's "
          "environment variable not set, webhooks changed since the last deploy"))
@click.option("--webhook", "wanted", multiple=True, metavar="NAME|URL",
              help="Deliver to this endpoint of plaudit.yaml only, named or by its URL "
                   "(repeatable). Default: every endpoint.")
@click.option("--once", "mode", flag_value="once", default=True,
              help="Deliver what is due, then exit (the default; for cron).")
@click.option("--follow", "mode", flag_value="follow",
              help="Then keep delivering as notices arrive and come due (LISTEN); Ctrl-C or "
                   "SIGTERM stops between batches (for systemd).")
@click.option("--batch-size", default=100, show_default=True, type=click.IntRange(min=1),
              help="Messages per transaction.")
@click.option("--retry-dead", "revive", is_flag=True,
              help="First make the dead letters pending again (once the endpoint is fixed), "
                   "then deliver.")
@click.pass_obj
def deliver_command(
    app: App, wanted: tuple[str, ...], mode: Literal["once", "follow"], batch_size: int,
    revive: bool,
) -> None:  # fmt: skip
    """Post the outbox to the webhooks of plaudit.yaml, signed, at least once.

    Every announced grant and every revocation is written to the outbox with the grant, for
    each endpoint whose badges or tags it matches. A message holds one user's notices for one
    endpoint (highest level first), each with its stable id, and is signed (the
    Plaudit-Signature header: HMAC-SHA256 of timestamp.body). A 2xx answer delivers it; an
    error or a timeout is retried with exponential backoff and jitter, until it is older than
    webhooks.retry.give_up_after: then it is a dead letter, which `plaudit status` reports.
    Several deliverers may run at once. Prints a line per message sent.
    """
    webhooks = app.config.webhooks
    endpoints = select_endpoints(webhooks, wanted)
    assert webhooks is not None
    dead = 0
    totals = {"batches": 0, "messages": 0, "delivered": 0}

    def on_batch(result: DeliveryBatch) -> None:
        nonlocal dead
        totals["batches"] += 1
        totals["messages"] += len(result.outcomes)
        totals["delivered"] += result.delivered
        dead += result.dead
        for outcome in result.outcomes:
            click.echo(_line(outcome))
        click.echo(
            f"batch {totals['batches']}: {count(len(result.outcomes), 'message')}, "
            f"{result.delivered:,} delivered, {result.retrying:,} to retry, "
            f"{result.dead:,} dead  {result.seconds:.2f}s", err=True)

    with app.engine() as engine:
        check_deployed(engine, webhooks)
        deliverer = Deliverer(engine, webhooks, endpoints, batch_size, on_batch)
        try:
            if revive:
                revived = retry_dead(engine, endpoints)
                click.echo(f"{count(revived, 'dead letter')} to send again", err=True)
            with deliverer.stop_on_signals():
                if mode == "follow":
                    with app.engine() as listener:
                        deliverer.follow(listener.db.conn, on_idle=waiting_once("notices"))
                else:
                    deliverer.drain()
        finally:
            deliverer.close()
    if deliverer.stopping:
        click.echo("stopped", err=True)
    if totals["messages"]:
        click.echo(f"sent {count(totals['messages'], 'message')}, "
                   f"{count(totals['delivered'], 'notice')} delivered", err=True)
    elif mode == "once":
        click.echo("nothing due", err=True)
    if dead:
        letters = "a dead letter" if dead == 1 else "dead letters"
        click.echo(f"Error: {count(dead, 'notice')} became {letters}: delivery gave up on "
                   "them; `plaudit deliver --retry-dead` sends them again", err=True)
        sys.exit(1)


def _line(outcome: Outcome) -> str:
    message = outcome.message
    grants = sum(1 for row in message.rows if row["action"] == "grant")
    revokes = len(message.rows) - grants
    what = count(grants, "grant") + (f", {count(revokes, 'revoke')}" if revokes else "")
    status = "delivered" if outcome.ok else f"failed: {outcome.error}"
    return "\t".join([message.webhook, str(message.user_id), what, status, message.message_id])




