"""Rule files the tests share (imported by the test modules)."""

from __future__ import annotations

_LEVELS = (("bronze", "Chatty", 5), ("silver", "Commentator", 25))


def commentator_rule(*thresholds: int) -> str:
    """A count rule over comments with one level per threshold (bronze, then silver)."""
    levels = "\n".join(
        f"      - {{key: {key}, name: {name}, threshold: {threshold}, points: {points}}}"
        for (key, name, points), threshold in zip(_LEVELS, thresholds, strict=False)
    )
    return f"""
    slug: commentator
    name: Commentator
    kind: count
    triggers: [comment_created]
    levels:
{levels}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at
      FROM comments AS c
      WHERE {{{{ affected('c.author_id') }}}}
"""
