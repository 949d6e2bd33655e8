"""The Jinja sandbox rule templates render in, with bounds on what a template can build.

Jinja's SandboxedEnvironment keeps a template away from Python's internals, but not from
Python's arithmetic: `{{ "x" * 10**8 }}` builds 100 MB, `range(10**9)` is an OverflowError
traceback, and nested loops run for hours. A rule template decides the shape of one SQL
query, which needs none of that, so here every loop over `range()`, every sequence built
with `*` or `+` and every power has a bound, and passing one is a SecurityError (a Jinja
TemplateError): the render reports it at the template's line, like any template error.
The rendered query itself is bounded by the render (render.MAX_QUERY).
"""

from __future__ import annotations

import operator
from typing import Any
from weakref import WeakKeyDictionary

from jinja2 import pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError

MAX_RANGE = 10_000  # items of one range()
MAX_ITERATIONS = 100_000  # items of all the range() calls of one render
MAX_ITEMS = 1_000_000  # characters of a string, or items of a list, built by `*` or `+`
MAX_BITS = 10_000  # size of a number built by `**`

# range() items handed out so far, per render (a render has its own Context)
_spent: WeakKeyDictionary[Context, int] = WeakKeyDictionary()
_SEQUENCES = (str, list, tuple)


@pass_context
def bounded_range(context: Context, *args: int) -> range:
    """range() for templates: at most MAX_RANGE items, MAX_ITERATIONS in a whole render
    (nested loops multiply)."""
    items = range(*args)
    spent = _spent.get(context, 0) + len(items)
    if len(items) > MAX_RANGE or spent > MAX_ITERATIONS:
        raise SecurityError(
            f"range() of {len(items):,} items: a rule template may loop at most "
            f"{MAX_RANGE:,} times in one range() and {MAX_ITERATIONS:,} times in all"
        )
    _spent[context] = spent
    return items


class RuleSandbox(SandboxedEnvironment):
    """The sandbox, with `*`, `+` and `**` checked before they compute."""

    intercepted_binops = frozenset({"*", "+", "**"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.globals["range"] = bounded_range

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        if op == "**":
            _check_power(left, right)
        elif op == "*":
            _check_size(op, _repeated_size(left, right))
        elif op == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            _check_size(op, len(left) + len(right))
        return super().call_binop(context, op, left, right)


def _repeated_size(left: Any, right: Any) -> int:
    """The length of `left * right` when it repeats a sequence, else 0."""
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, _SEQUENCES) and isinstance(times, int):
            return len(sequence) * max(times, 0)
    return 0


def _check_size(op: str, size: int) -> None:
    if size > MAX_ITEMS:
        raise SecurityError(
            f"'{op}' would build {size:,} items: a rule template may build at most {MAX_ITEMS:,}"
        )


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        bits = operator.index(abs(base)).bit_length() * exponent
        if abs(base) > 1 and bits > MAX_BITS:
            raise SecurityError(
                f"'**' would build a number of about {bits:,} bits: a rule template may "
                f"build at most {MAX_BITS:,}"
            )
