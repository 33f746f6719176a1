"""The bounded Jinja2 sandbox that conditions and templates run in.

Jinja's own sandbox stops attribute tricks, not arithmetic: `10**(10**10)`, `'x' * 10**12`,
`lipsum(1000000)` or a loop inside a loop inside a loop run for ever, and the compiler folds
constant expressions, so `9**(9**8)` hangs before anything runs. Here every value an
expression makes is bounded in size *before* Python builds it, every operation spends from
a work budget, and output is counted as it is made. The work budget counts operations, not
seconds, so a condition inside the deterministic workflow gives the same answer on replay;
templates, which render in an activity, also get a deadline.
"""

from __future__ import annotations

import inspect
import re
import string
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, MappingView
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import update_wrapper, wraps
from typing import Any

from jinja2 import nodes
from jinja2.runtime import Context, Undefined, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Cycler, Joiner, Namespace, generate_lorem_ipsum
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

MAX_VALUE = 1_000_000
"""Characters a value may take as text (a string, or a list printed): the largest email body."""
MAX_ITEMS = 100_000
"""Items in one list, tuple or mapping."""
MAX_INT_BITS = 4096
"""About 1,200 digits: far beyond any price, below Python's limit for printing an int."""
MAX_RANGE = 10_000
"""Items of `range(...)`: Jinja's own limit is 100,000."""
MAX_WIDTH = 1_000
"""A field width or precision in `'%5s'`, `'{:>5}'`, and the indent of `tojson`."""
MAX_LIPSUM_PARAGRAPHS = 5
MAX_LIPSUM_WORDS = 100

_TYPE_WEIGHT = 8
"""What a number, a boolean or any other object counts as text: about its printed size."""


class LimitExceeded(Exception):
    """An expression or template went past a bound: always the template's fault, never data loss."""


@dataclass
class Budget:
    """What one condition evaluation or one message render may spend.

    `work` counts operations and the size of what they make; `deadline` (time.monotonic)
    is only for templates: a condition must not read the clock, it runs in the workflow."""

    work: int
    deadline: float | None = None
    seconds: float | None = None

    def spend(self, units: int) -> None:
        self.work -= units
        if self.work < 0:
            raise LimitExceeded("too much work: the template or condition does too many operations")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise LimitExceeded(f"rendering took longer than {self.seconds:g} s")


_current: ContextVar[Budget | None] = ContextVar("cyklo_sandbox_budget", default=None)


@contextmanager
def spending(budget: Budget) -> Iterator[Budget]:
    """Run the sandboxed code inside with `budget`; compiling counts too (it folds constants)."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def template_budget(work: int, seconds: float) -> Budget:
    return Budget(work=work, deadline=time.monotonic() + seconds, seconds=seconds)


def _spend(units: int) -> None:
    budget = _current.get()
    if budget is not None:
        budget.spend(units)


# Sizes


def weight(value: Any, limit: int = MAX_VALUE) -> int:
    """Characters `value` takes as text, counting a shared item each time it appears (as
    `str()` would); stops counting soon after `limit`, so measuring stays cheap."""
    total = 0
    pending = [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, (str, bytes, bytearray)):
            total += len(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, Mapping) and not isinstance(item, Undefined):
            total += 2 + 2 * len(item)
            if len(item) > MAX_ITEMS:
                return limit + 1
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset, MappingView)):
            total += 2 + 2 * len(item)
            if len(item) > MAX_ITEMS:
                return limit + 1
            pending.extend(iter(item))  # type: ignore[arg-type]
        else:
            total += _TYPE_WEIGHT
    return total


def checked(value: Any) -> Any:
    """`value` if it is within the bounds; LimitExceeded naming the bound otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise LimitExceeded(f"number too large: more than {MAX_INT_BITS} bits")
        return value
    if isinstance(value, (list, tuple, set, frozenset, dict)) and len(value) > MAX_ITEMS:
        raise LimitExceeded(f"list or mapping too long: more than {MAX_ITEMS:,} items")
    if weight(value) > MAX_VALUE:
        raise LimitExceeded(f"value too large: more than {MAX_VALUE:,} characters")
    return value


def _within(estimate: int, what: str) -> None:
    if estimate > MAX_VALUE:
        raise LimitExceeded(f"{what} would make more than {MAX_VALUE:,} characters")


def _count(value: Any, what: str) -> int:
    """An int argument that says how much to make (a width, a length, a repeat)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    if abs(value) > MAX_VALUE:
        raise LimitExceeded(f"{what} is too large: at most {MAX_VALUE:,}")
    return max(value, 0)


# Operators

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.DOTALL)


def _check_percent(template: str | bytes, arguments: Any) -> None:
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    fields = 0
    for width, precision, _ in _PERCENT_SPEC.findall(text):
        fields += 1
        for number in (width, precision):
            if number == "*" or (number and int(number) > MAX_WIDTH):
                raise LimitExceeded(f"format width or precision too large: at most {MAX_WIDTH}")
    if isinstance(arguments, Mapping):
        # `%(name)s` may use one value many times.
        largest = max((weight(item) for item in arguments.values()), default=0)
        _within(len(text) + fields * max(largest, MAX_WIDTH), "formatting")
    else:
        _within(len(text) + weight(arguments) + fields * MAX_WIDTH, "formatting")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    sequences = (str, bytes, list, tuple)
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
                raise LimitExceeded(f"number too large: more than {MAX_INT_BITS} bits")
            return
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, sequences) and isinstance(times, int):
                if len(sequence) * max(times, 0) > MAX_ITEMS and not isinstance(sequence, (str, bytes)):
                    raise LimitExceeded(f"list too long: more than {MAX_ITEMS:,} items")
                _within(weight(sequence) * max(times, 0), "repeating")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if (abs(left).bit_length() - 1) * right > MAX_INT_BITS:
                raise LimitExceeded(f"number too large: more than {MAX_INT_BITS} bits")
    elif operator == "+":
        if isinstance(left, sequences) and isinstance(right, sequences):
            _within(weight(left) + weight(right), "adding")
    elif operator == "%" and isinstance(left, (str, bytes)):
        _check_percent(left, right)


# Calls of built-in methods: the few that can make far more than they are given


def _estimated_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if isinstance(owner, int) and not isinstance(owner, bool):
        for value in (*args, *kwargs.values()):
            _count(value, f"argument of {name}()")  # int.to_bytes(length) makes `length` bytes
    if not isinstance(owner, (str, bytes)):
        return
    for value in (*args, *kwargs.values()):
        _count(value, f"argument of {name}()")
    size = len(owner)
    arguments = list(args) + list(kwargs.values())
    if name in ("center", "ljust", "rjust", "zfill") and arguments:
        _within(max(size, _count(arguments[0], "width")), name)
    elif name == "expandtabs":
        tab = _count(arguments[0], "tab size") if arguments else 8
        _within(size + owner.count("\t" if isinstance(owner, str) else b"\t") * tab, name)  # type: ignore[arg-type]
    elif name == "replace" and len(arguments) >= 2:
        old, new = arguments[0], arguments[1]
        if isinstance(old, (str, bytes)) and isinstance(new, (str, bytes)):
            found = size + 1 if not old else owner.count(old)  # type: ignore[arg-type]
            _within(size + found * len(new), name)
    elif name == "translate" and arguments and isinstance(arguments[0], Mapping):
        _within(size * max((weight(value) for value in arguments[0].values()), default=1), name)
    elif name in ("upper", "lower", "title", "casefold", "swapcase", "capitalize", "encode"):
        _within(size * 4, name)


def _items(iterable: Any) -> list[Any]:
    items = []
    for item in iterable:
        items.append(item)
        if len(items) > MAX_ITEMS:
            raise LimitExceeded(f"list too long: more than {MAX_ITEMS:,} items")
    _spend(len(items))
    return items


# Filters


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value) if isinstance(value, (int, float)) else ""


def _estimate_filter(name: str, bound: inspect.BoundArguments) -> None:
    """Stop a built-in filter that would make far more than it was given, before it runs."""
    arguments = bound.arguments
    value = next(iter(arguments.values()), None)
    size = weight(value)
    if name == "center":
        _within(max(size, _count(arguments.get("width", 80), "width")), name)
    elif name == "indent":
        width = arguments.get("width", 4)
        prefix = _count(width, "indent") if isinstance(width, int) else weight(width)
        lines = _text(value).count("\n") + 2
        _within(size + lines * prefix, name)
    elif name == "wordwrap":
        width = max(_count(arguments.get("width", 79), "width"), 1)
        wrap = arguments.get("wrapstring") or "\n"
        lines = 2 * size // width + _text(value).count("\n") + 2
        _within(size + lines * weight(wrap), name)
    elif name == "join":
        items = len(value) if isinstance(value, (list, tuple, dict, str)) else MAX_ITEMS
        _within(size + items * weight(arguments.get("d", "")), name)
    elif name == "replace":
        old, new, text = arguments.get("old"), arguments.get("new"), _text(value)
        if isinstance(old, str) and isinstance(new, str):
            found = len(text) + 1 if not old else text.count(old)
            _within(size + found * len(new), name)
    elif name == "format":
        _check_percent(_text(value), arguments.get("kwargs") or arguments.get("args") or ())
    elif name == "sum":
        start = arguments.get("start", 0)
        if isinstance(start, bool) or not isinstance(start, (int, float)):
            raise LimitExceeded("sum adds numbers: a start that is not a number can take for ever")
    elif name == "tojson":
        indent = arguments.get("indent")
        if indent is not None and _count(indent, "indent") > 8:
            raise LimitExceeded("tojson indent too large: at most 8")
        _within(6 * size * (1 + (indent or 0)), name)
    elif name == "urlize":
        extra = weight(arguments.get("target") or "") + weight(arguments.get("rel") or "") + 64
        _within(2 * size + (len(_text(value).split()) + 1) * extra, name)
    elif name == "striptags":
        # markupsafe cuts one tag at a time out of the whole text: quadratic in the tags.
        text = _text(value)
        if len(text) * (text.count("<") + 1) > 1_000_000_000:
            raise LimitExceeded("striptags on this much markup would take too long")
    elif name in ("batch", "slice"):
        count = _count(arguments.get("linecount", arguments.get("slices", 0)), name)
        _within(size + count * (weight(arguments.get("fill_with")) + 2), name)
    elif name in ("escape", "e", "forceescape", "string", "pprint", "xmlattr"):
        _within(6 * size, name)
    elif name == "urlencode":
        _within(9 * size, name)


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(function)
    passes_first = hasattr(function, "jinja_pass_arg")

    @wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _spend(1)
        given = args[1:] if passes_first else args
        for value in (*given, *kwargs.values()):
            checked(value)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            bound = None  # the filter itself says what is wrong with its arguments
        if bound is not None:
            if passes_first:
                bound.arguments.pop(next(iter(bound.arguments)))
            _estimate_filter(name, bound)
        result = function(*args, **kwargs)
        _spend(weight(result) if isinstance(result, (str, list, tuple)) else 1)
        return checked(result)

    return bounded


# Globals


def bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise LimitExceeded(f"range too long: at most {MAX_RANGE:,} numbers")
    return numbers


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 - Jinja's names
    if n > MAX_LIPSUM_PARAGRAPHS or max > MAX_LIPSUM_WORDS or min > max:
        raise LimitExceeded(
            f"lipsum makes at most {MAX_LIPSUM_PARAGRAPHS} paragraphs of at most {MAX_LIPSUM_WORDS} words"
        )
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


BOUNDED_GLOBALS: dict[str, Any] = {
    "range": bounded_range,
    "dict": dict,
    "lipsum": bounded_lipsum,
    "cycler": Cycler,
    "joiner": Joiner,
    "namespace": Namespace,
}


# str.format: widths come from the format string or from nested fields, so check each field


class _BoundedFormatting:
    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in re.findall(r"\d+", format_spec):
            if int(number) > MAX_WIDTH:
                raise LimitExceeded(f"format width or precision too large: at most {MAX_WIDTH}")
        checked(value)
        made = super().format_field(value, format_spec)  # type: ignore[misc]
        self.made = getattr(self, "made", 0) + len(made)
        _within(self.made, "formatting")
        return made


class _BoundedFormatter(_BoundedFormatting, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_BoundedFormatting, SandboxedEscapeFormatter):
    pass


# The compiled template: loops, `~` and output go through the environment


class _Bounding(NodeTransformer):
    """Routes what the sandbox cannot otherwise see through the environment's methods:
    each loop iteration, each `a ~ b` and each piece of output."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 - Jinja visitor names
        self.generic_visit(node)
        node.iter = _call("bounded_iteration", [node.iter], node.lineno)  # type: ignore[list-item]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return _call("bounded_concat", [nodes.ContextReference(lineno=node.lineno), *node.nodes], node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        node.nodes = [_call("counted_output", [child], child.lineno) for child in node.nodes]
        return node


def _call(attribute: str, arguments: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(attribute, lineno=lineno), arguments, [], None, None, lineno=lineno)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with every value, operation, loop and output bounded."""

    intercepted_binops = frozenset(("+", "-", "*", "/", "//", "%", "**"))
    """Intercepted operators are also never folded at compile time (nodes.BinExpr.as_const)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.clear()
        self.globals.update(BOUNDED_GLOBALS)
        self.filters = {name: _bounded_filter(name, function) for name, function in self.filters.items()}

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False) -> str:
        return super()._generate(_Bounding().visit(source), name, filename, defer_init)  # type: ignore[no-any-return]

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _spend(1)
        _check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        _spend(weight(result) if isinstance(result, (str, list, tuple)) else 1)
        return checked(result)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        _spend(1)
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, (str, bytes)) and name == "join" and args:
            items = _items(args[0])
            _within(weight(items) + len(items) * len(owner), "join")
            args = (items, *args[1:])
        elif not (hasattr(__obj, "__wrapped__") and name in ("format", "format_map")):
            # A wrapped format checks each field itself: its arguments are values, not sizes.
            _estimated_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return checked(result)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _spend(1)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _spend(1)
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        owner = value.__self__
        if not isinstance(owner, str):
            return None
        kind = type(owner)
        is_map = value.__name__ == "format_map"

        def bounded_format(*given: Any, **kwargs: Any) -> str:
            args: tuple[Any, ...] = given
            formatter: string.Formatter = (
                _BoundedEscapeFormatter(self, escape=owner.escape)
                if isinstance(owner, Markup)
                else _BoundedFormatter(self)
            )
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one mapping")
                args, kwargs = (), given[0]
            return kind(formatter.vformat(owner, args, kwargs))

        return update_wrapper(bounded_format, value)

    def bounded_iteration(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _spend(1)
            yield item

    def bounded_concat(self, context: Context, *parts: Any) -> str:
        _within(sum(weight(part) for part in parts), "joining with ~")
        # As Jinja's own `~`: with autoescape, Markup parts stay markup and the rest is escaped.
        joined: str = (markup_join if context.eval_ctx.autoescape else str_join)(parts)
        _spend(len(joined))
        return joined

    def counted_output(self, value: Any) -> Any:
        # The value is measured before Jinja turns it into text, which is where a list
        # holding one long string many times would become gigabytes.
        _spend(weight(value))
        return value
