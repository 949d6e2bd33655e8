"""One webhook message: a user's notices for one endpoint, its JSON body, its signature, and
the POST that delivers it (httpx).

The body lists the user's grants, highest level first, and their revocations; each item's
`id` is the notice's stable id (plaudit.outbox.notice_id), which a receiver deduplicates on:
delivery is at least once. The message id is made from the endpoint and the notice ids, so a
retry of the same notices carries the same id.

Signing is Stripe's and GitHub's scheme: `Plaudit-Signature: t=<unix time>,v1=<hex>`, the
HMAC-SHA256, keyed by the endpoint's secret, of the time, a dot and the body's bytes. The time
in the signature lets a receiver refuse a replayed request (docs/operations.md, "Webhooks").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from plaudit import __version__

SIGNATURE_HEADER = "Plaudit-Signature"
MESSAGE_ID_HEADER = "Plaudit-Message-Id"
# the namespace of message ids (uuid5 of the endpoint and the notice ids)
_MESSAGE_NAMESPACE = uuid.UUID("5d1c2a4e-8f0b-4d7e-9a51-6c1f3b7e2d90")


@dataclass(frozen=True)
class Message:
    """A user's pending notices for one endpoint, as plaudit.take_deliveries returns them."""

    webhook: str
    user_id: Any
    rows: Sequence[Mapping[str, Any]]

    @property
    def notice_ids(self) -> list[str]:
        return [str(row["notice_id"]) for row in self.rows]

    @property
    def message_id(self) -> str:
        key = self.webhook + ":" + ",".join(sorted(self.notice_ids))
        return str(uuid.uuid5(_MESSAGE_NAMESPACE, key))

    def payload(self) -> dict[str, Any]:
        """The JSON document: grants highest level first (then most points, by badge, scope
        and when announced), then revocations in the same order."""
        ordered = sorted(self.rows, key=lambda r: (
            -r["position"], -int(r["notice"].get("points") or 0), r["badge"], r["scope"],
            r["created_at"], str(r["notice_id"])))
        items: dict[str, list[dict[str, Any]]] = {"grant": [], "revoke": []}
        for row in ordered:
            items[row["action"]].append({"id": str(row["notice_id"]), **row["notice"]})
        user = self.user_id if isinstance(self.user_id, int) else str(self.user_id)
        return {"message_id": self.message_id, "webhook": self.webhook, "user_id": user,
                "grants": items["grant"], "revokes": items["revoke"]}

    def body(self) -> bytes:
        return json.dumps(self.payload(), ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The Plaudit-Signature header's value for this body, sent at `timestamp`."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, tolerance: float = 300) -> bool:
    """What a receiver does (the README's snippet, tested): the signature matches, and was
    made within `tolerance` seconds of now."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret, f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(fields["t"])) <= tolerance
    return hmac.compare_digest(expected, fields["v1"]) and fresh


@dataclass(frozen=True)
class Outcome:
    message: Message
    ok: bool
    error: str | None  # why not: "HTTP 500", "timed out after 10s", "connection refused ..."
    seconds: float


def post(client: httpx.Client, url: str, secret: bytes, message: Message) -> Outcome:
    """POST the message, signed; ok on a 2xx answer. Never raises for what the network or
    the receiver does: that is an outcome to retry."""
    body = message.body()
    started = time.monotonic()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"plaudit/{__version__}",
        MESSAGE_ID_HEADER: message.message_id,
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        error: str | None = f"timed out after {client.timeout.read}s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    else:
        error = None if response.is_success else f"HTTP {response.status_code}"
    return Outcome(message, error is None, error, time.monotonic() - started)
