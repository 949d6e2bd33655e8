"""The two modes a rule runs in: over all history (backfill), or for the users of a batch of
events (incremental). Defined once; rendering, the engine and the authoring tools use it."""

from __future__ import annotations

from typing import Literal

Mode = Literal["backfill", "incremental"]
