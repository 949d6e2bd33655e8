"""The Jinja sandbox rule templates render in, with bounds on what a template can build.

Jinja's SandboxedEnvironment keeps a template away from Python's internals, but not from
Python's arithmetic: `{{ "x" * 10**8 }}` builds 100 MB, `range(10**9)` is an OverflowError
traceback, and nested loops run for hours. A rule template decides the shape of one SQL
query, which needs none of that, so here every `{% for %}` step, `range()`, string or list
built with `*`, `+` or `~`, power, padding width and format width has a bound, and passing
one is a SecurityError (a Jinja TemplateError): the render reports it at the template's
line, like any template error. The rendered query itself is bounded by the render
(render.MAX_QUERY). plaudit's own templates (sql/kinds/*.sql) share the sandbox; the loop
budget applies to rule templates only, as a kind's module lives as long as the process.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator
from functools import wraps
from typing import Any
from weakref import WeakKeyDictionary

from jinja2 import nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

MAX_RANGE = 10_000  # items of one range()
MAX_ITERATIONS = 100_000  # items of all the range() calls of one render
MAX_STEPS = 100_000  # steps of all the {% for %} loops of one render
MAX_ITEMS = 1_000_000  # characters of a string, or items of a list, built by `*`, `+`, `~`
MAX_BITS = 10_000  # size of a number built by `**`
# a width in a format string ("%9999999d", "{:>9999999}"): as many characters
_WIDE = re.compile(r"\d{7,}")

# range() items handed out so far, per render (a render has its own Context)
_spent: WeakKeyDictionary[Context, int] = WeakKeyDictionary()
_SEQUENCES = (str, list, tuple)


# {% for %} steps taken so far, per render
_steps: WeakKeyDictionary[Context, int] = WeakKeyDictionary()


def _budgeted(context: Context) -> bool:
    """Rule templates (from strings) count their loops; plaudit's .sql templates do not."""
    return not (context.name or "").endswith(".sql")


@pass_context
def bounded_range(context: Context, *args: int) -> range:
    """range() for templates: at most MAX_RANGE items, MAX_ITERATIONS in a whole render
    (nested loops multiply)."""
    items = range(*args)
    spent = _spent.get(context, 0) + len(items) if _budgeted(context) else 0
    if len(items) > MAX_RANGE or spent > MAX_ITERATIONS:
        raise SecurityError(
            f"range() of {len(items):,} items: a rule template may loop at most "
            f"{MAX_RANGE:,} times in one range() and {MAX_ITERATIONS:,} times in all"
        )
    if spent:
        _spent[context] = spent
    return items


class _BoundedCode(CodeGenerator):
    """Compiles every `{% for %}` to step through RuleSandbox.bounded_steps, and every `~`
    through RuleSandbox.bounded_join."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        counted = nodes.Call(
            nodes.EnvironmentAttribute("bounded_steps"),
            [nodes.ContextReference(), node.iter],
            [],
            None,
            None,
        )
        node.iter = counted.set_lineno(node.iter.lineno).set_environment(self.environment)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_join((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class RuleSandbox(SandboxedEnvironment):
    """The sandbox, with `*`, `+`, `**`, `%`, `~`, loops and padding checked before they
    compute."""

    code_generator_class = _BoundedCode
    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.globals["range"] = bounded_range
        del self.globals["lipsum"]  # lipsum(n=10**7): SQL needs no filler text
        for name in ("center", "indent", "wordwrap", "truncate"):
            self.filters[name] = _bounded_widths(name, self.filters[name])
        self.filters["format"] = _bounded_format(self.filters["format"])
        self.filters["replace"] = _bounded_replace(self.filters["replace"])
        self.filters["join"] = _bounded_join_filter(self.filters["join"])

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        if op == "**":
            _check_power(left, right)
        elif op == "*":
            _check_size(op, _repeated_size(left, right))
        elif op == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            _check_size(op, len(left) + len(right))
        elif op == "%" and isinstance(left, str):
            _check_format(left)
        return super().call_binop(context, op, left, right)

    def call(self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # str methods that build what their arguments say: "x".ljust(10**10)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            _check_size(f".{getattr(__obj, '__name__', '?')}()", _str_method_size(
                owner, getattr(__obj, "__name__", ""), args, kwargs))
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # "{:>9999999}".format(1): str.format and format_map build what their widths say
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format(value.__self__)
        return wrapped

    def bounded_steps(self, context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
        """The items of a `{% for %}`, each one step of the render's MAX_STEPS."""
        for item in iterable:
            if _budgeted(context):
                steps = _steps.get(context, 0) + 1
                if steps > MAX_STEPS:
                    raise SecurityError(
                        f"more than {MAX_STEPS:,} loop steps: a rule template may loop at most "
                        f"{MAX_STEPS:,} times in all"
                    )
                _steps[context] = steps
            yield item

    def bounded_join(self, values: Iterable[Any]) -> str:
        """`a ~ b`: str() of each, joined, at most MAX_ITEMS characters."""
        parts = [str(value) for value in values]
        _check_size("~", sum(map(len, parts)))
        return "".join(parts)


def _str_method_size(text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The length of what a str method would return, before it runs (0: not a builder)."""
    if name in ("ljust", "rjust", "center", "zfill") and args and isinstance(args[0], int):
        return max(args[0], len(text))
    if name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        return len(text) + text.count("\t") * max(int(size), 0)
    if name == "replace" and len(args) >= 2 and isinstance(args[1], str):
        return len(text) + text.count(str(args[0])) * max(len(args[1]) - len(str(args[0])), 0) \
            if args[0] else len(text) * (len(args[1]) + 1)
    if name == "join" and args:
        items = list(args[0]) if not isinstance(args[0], str) else list(args[0])
        return sum(len(str(i)) for i in items) + len(text) * max(len(items) - 1, 0)
    return 0


def _bounded_widths(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose number arguments are widths (center, indent, ...)."""

    @wraps(original)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[1:], *kwargs.values()):
            if isinstance(value, int) and value > MAX_ITEMS:
                _check_size(name, value)
            if isinstance(value, str):
                _check_size(name, len(value) * max(1, len(str(args[0]))))
        return original(*args, **kwargs)

    return bounded


def _bounded_format(original: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(original)
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_format(str(value))
        return original(value, *args, **kwargs)

    return bounded


def _bounded_replace(original: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(original)
    def bounded(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
        times = str(s).count(str(old)) if str(old) else len(str(s)) + 1
        _check_size("replace", len(str(s)) + times * len(str(new)))
        return original(eval_ctx, s, old, new, count)

    return bounded


def _bounded_join_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(original)
    def bounded(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        size = sum(len(str(item)) for item in items) + len(str(d)) * max(len(items) - 1, 0)
        _check_size("join", size)
        return original(eval_ctx, items, d, attribute)

    return bounded


def _check_format(text: str) -> None:
    if _WIDE.search(text):
        raise SecurityError(
            "a format width of a million characters or more: a rule template may build at "
            f"most {MAX_ITEMS:,}"
        )


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
