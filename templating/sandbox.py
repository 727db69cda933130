"""The Jinja2 environment that message templates run in, and the limits it enforces.

Templates are written by operators and filled with lead data from imported files, so both are
treated as hostile. Layers, outermost first:

1. `check_template_ast` accepts only an allow-listed subset of the language (no macros, includes,
   imports, blocks, recursive loops or `{% autoescape %}`), an allow-listed set of filters and
   tests, and no names or attributes that start with an underscore.
2. The parsed tree is rewritten so that every `for` loop iterates through a counting guard and
   every `~` concatenation goes through a size guard, then compiled without constant folding
   (nothing runs at compile time).
3. `TemplateEnvironment` (an `ImmutableSandboxedEnvironment`) resolves attributes on plain data
   only: mappings by key, strings through a short list of read-only methods, loop state through
   its public attributes. Everything else raises `SecurityError`. Only the helpers this module
   puts in the globals, those string methods and `loop.cycle` may be called.
4. Arithmetic that can explode (`*`, `**`, `+`, `%`) is intercepted and refused past a size
   bound; `range()` is capped; the total number of loop iterations, every intermediate value,
   everything printed (also into `{% set %}` blocks), the output and the wall-clock time of one
   render are bounded (`RenderLimitError`).

Sizes are measured, not taken from `len()`: `measured_size` counts the characters a value
would have as text, through nested lists and dicts, and stops as soon as the count passes the
limit, so measuring costs at most `limit` steps. `[[[1]*1000]*1000]*300` is refused when it is
built, before anything turns it into one huge string (a step the deadline cannot interrupt).

Context values are converted to plain data (`plain_data`) before rendering, so a lead field
is only ever a string or a number: it is printed, never compiled as template code.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import itertools
import math
import operator
import time
from collections.abc import Iterator, Mapping, Sized
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as JINJA_FILTERS
from jinja2.runtime import LoopContext, Undefined, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.tests import TESTS as JINJA_TESTS
from jinja2.utils import pass_context, pass_eval_context
from jinja2.visitor import NodeTransformer

# --- Limits (per render of one template part) ------------------------------------------------
MAX_TEMPLATE_CHARS = 50_000  # source of one part
MAX_VALUE_CHARS = 100_000  # any string or sequence built while rendering
MAX_OUTPUT_CHARS = 100_000  # the rendered part
MAX_RANGE_ITEMS = 1_000  # range(); Jinja's own sandbox allows 100,000
MAX_LOOP_ITERATIONS = 10_000  # summed over every loop of the render
MAX_INT_BITS = 4_096  # integers built by * and **
MAX_RENDER_SECONDS = 2.0
# Everything printed in one render, also into {% set %} and {% filter %} blocks that are then
# printed again: room for a block captured once and printed once, no more.
MAX_PRINTED_CHARS = 4 * MAX_OUTPUT_CHARS
_TICK_EVERY = 4_096  # measuring steps between deadline checks

# Not offered: filters whose arguments can make unbounded work (center, indent, format,
# round with a huge precision, wordwrap with a huge wrapstring), that reach attributes (attr,
# map, selectattr) or mark data safe (safe).
SAFE_FILTERS = (
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "e",
    "escape",
    "first",
    "float",
    "int",
    "join",
    "last",
    "length",
    "lower",
    "replace",
    "reverse",
    "sort",
    "string",
    "striptags",
    "title",
    "trim",
    "truncate",
    "upper",
    "urlencode",
    "wordcount",
)
SAFE_TESTS = (
    "boolean",
    "defined",
    "divisibleby",
    "eq",
    "equalto",
    "even",
    "false",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "le",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "sequence",
    "string",
    "true",
    "undefined",
    "upper",
)
# Read-only string methods a template may call (`{{ first_name.upper() }}`).
SAFE_STR_METHODS = frozenset(
    {
        "capitalize",
        "endswith",
        "isdigit",
        "lower",
        "lstrip",
        "rstrip",
        "split",
        "startswith",
        "strip",
        "title",
        "upper",
    }
)
SAFE_LOOP_ATTRIBUTES = frozenset(
    {
        "cycle",
        "depth",
        "depth0",
        "first",
        "index",
        "index0",
        "last",
        "length",
        "revindex",
        "revindex0",
    }
)
GLOBAL_HELPERS = ("choose", "range")

# Node types a template may contain; anything else is refused with its name.
_ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Slice,
    nodes.Filter,
    nodes.Test,
    nodes.If,
    nodes.CondExpr,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Neg,
    nodes.Pos,
    nodes.Compare,
    nodes.Operand,
    nodes.Concat,
    nodes.Add,
    nodes.Sub,
    nodes.Mul,
    nodes.Div,
    nodes.FloorDiv,
    nodes.Mod,
    nodes.Pow,
    nodes.Call,
    nodes.Keyword,
    nodes.Tuple,
    nodes.List,
    nodes.Dict,
    nodes.Pair,
    nodes.For,
    nodes.Assign,
    nodes.AssignBlock,
    nodes.FilterBlock,
    nodes.With,
)
_STATEMENT_NAMES = {
    "Macro": "{% macro %}",
    "CallBlock": "{% call %}",
    "Block": "{% block %}",
    "Extends": "{% extends %}",
    "Include": "{% include %}",
    "Import": "{% import %}",
    "FromImport": "{% from ... import %}",
    "ScopedEvalContextModifier": "{% autoescape %}",
    "EvalContextModifier": "{% autoescape %}",
    "Scope": "{% autoescape %}",
}


class RenderLimitError(Exception):
    """A render went past one of the resource bounds (size, loop count, time)."""


class TemplateRuleError(Exception):
    """The template uses something outside the allowed language subset."""

    def __init__(self, message: str, lineno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


@dataclass(frozen=True)
class ContextSchema:
    """The variables a context builder promises, used to reject unknown attributes at save.

    `namespaces` maps a top-level name to the attribute names it has; `open_namespaces` are
    nested mappings with free keys (custom fields). Unknown top-level names are allowed (they
    may be custom fields) and become required variables of the template.
    """

    namespaces: Mapping[str, frozenset[str]] = field(default_factory=dict)
    open_namespaces: frozenset[tuple[str, ...]] = frozenset()
    descriptions: Mapping[str, str] = field(default_factory=dict)


# --- Per-render state ------------------------------------------------------------------------
@dataclass
class _RenderState:
    seed: str
    deadline: float
    iterations: int = 0
    printed: int = 0


_state: contextvars.ContextVar[_RenderState | None] = contextvars.ContextVar(
    "aicmo_render_state", default=None
)


def _current() -> _RenderState:
    state = _state.get()
    if state is None:  # a guard called outside render_template: apply the bounds anyway
        state = _RenderState(seed="", deadline=time.monotonic() + MAX_RENDER_SECONDS)
        _state.set(state)
    return state


def _tick() -> None:
    if time.monotonic() > _current().deadline:
        raise RenderLimitError(f"the render took longer than {MAX_RENDER_SECONDS:g} seconds")


def _scalar_size(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return abs(value).bit_length() * 31 // 100 + 2  # decimal digits, rounded up
    if isinstance(value, float):
        return 24
    return 50  # a helper or loop object: printed as a short repr


def measured_size(value: Any, limit: int, what: str) -> int:
    """About how many characters `value` has as text: a string its length, a container its
    items plus brackets and separators, recursively, never less than the real length of
    str(value) for plain data (escaped quotes and control characters in a repr aside).
    Raises RenderLimitError as soon as the count passes `limit`,
    so the walk takes at most `limit` steps, and checks the deadline while it walks."""
    if isinstance(value, str):
        total = len(value)
        stack: list[Any] = []
    else:
        total, stack = 0, [value]
    if total > limit:
        raise RenderLimitError(f"{what} would be longer than {limit:,} characters")
    steps = 0
    while stack:
        item = stack.pop()
        steps += 1
        if steps % _TICK_EVERY == 0:
            _tick()
        if isinstance(item, str):
            total += len(item) + 2  # quotes of its repr inside a container
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, range):
            total += 2 + len(item) * (_scalar_size(max(abs(item.start), abs(item.stop))) + 2)
        else:
            total += _scalar_size(item)
        if total > limit:
            raise RenderLimitError(f"{what} would be longer than {limit:,} characters")
    return total


def _check_size(value: Any, what: str) -> Any:
    measured_size(value, MAX_VALUE_CHARS, what)
    return value


def _literal_guard(value: Any) -> Any:
    """A list, tuple or dict written in the template: `[big, big, big]` is built from
    references, so its size is only known by measuring it."""
    _tick()
    return _check_size(value, "a list or dict built by the template")


def _print_guard(value: Any) -> Any:
    """Every value printed, counted against the render's print budget before it becomes text."""
    state = _current()
    remaining = MAX_PRINTED_CHARS - state.printed
    if isinstance(value, Undefined):
        return value  # printing it raises the usual "is undefined" error
    try:
        state.printed += measured_size(value, remaining, "the printed text")
    except RenderLimitError:
        raise RenderLimitError(
            f"the printed text would be longer than {MAX_PRINTED_CHARS:,} characters"
        ) from None
    _tick()
    return value


def _count_text(size: int) -> str:
    """Literal template text inside a loop counts against the print budget too."""
    state = _current()
    state.printed += size
    if state.printed > MAX_PRINTED_CHARS:
        raise RenderLimitError(
            f"the printed text would be longer than {MAX_PRINTED_CHARS:,} characters"
        )
    return ""


# --- Guarded helpers -------------------------------------------------------------------------
def bounded_range(*args: int) -> range:
    _tick()
    rng = range(*args)
    if len(rng) > MAX_RANGE_ITEMS:
        raise RenderLimitError(f"range() is limited to {MAX_RANGE_ITEMS:,} items")
    return rng


@pass_context
def choose(context: Any, *options: Any, key: str = "") -> Any:
    """Pick one option, always the same one for the same recipient (stable across re-renders).

    The choice hashes the recipient seed, `key` and the options, so two `choose` calls with
    different keys vary independently.
    """
    _tick()
    if not options:
        raise ValueError("choose() needs at least one option")
    measured_size(options, MAX_VALUE_CHARS, "choose()'s options")
    material = "\x1f".join([_current().seed, str(key), *map(str, options)])
    digest = hashlib.sha256(material.encode("utf-8")).digest()
    return options[int.from_bytes(digest[:8], "big") % len(options)]


def _loop_guard(iterable: Any) -> Iterator[Any]:
    if isinstance(iterable, Undefined):
        iter(iterable)  # StrictUndefined raises the usual "is undefined" error
    state = _current()
    for item in iterable:
        state.iterations += 1
        if state.iterations > MAX_LOOP_ITERATIONS:
            raise RenderLimitError(
                f"loops ran more than {MAX_LOOP_ITERATIONS:,} iterations in one render"
            )
        _tick()
        yield item


@pass_eval_context
def _concat_guard(eval_ctx: Any, parts: list[Any]) -> str:
    _tick()
    # Measured before str() runs on a part: turning a huge list into text cannot be stopped.
    measured_size(parts, MAX_VALUE_CHARS, "a joined string")
    if eval_ctx.volatile or eval_ctx.autoescape:
        return markup_join(parts)
    return str_join(parts)


def _guard_filter(name: str, func: Any) -> Any:
    """Wrap a Jinja filter so its result is size-checked and it counts toward the time bound."""

    def pre_replace(data: tuple) -> None:
        if len(data) >= 3:
            measured_size(data[:3], MAX_VALUE_CHARS, "replace()'s arguments")
            value, old, new = (str(x) for x in data[:3])
            hits = value.count(old) if old else len(value) + 1
            if len(value) + hits * max(len(new) - len(old), 0) > MAX_VALUE_CHARS:
                raise RenderLimitError(
                    f"replace() would build more than {MAX_VALUE_CHARS:,} characters"
                )

    def pre_join(data: tuple) -> None:
        seq = data[0] if data else None
        sep = str(data[1]) if len(data) > 1 else ""
        if isinstance(seq, Sized) and not isinstance(seq, Mapping):
            if len(seq) > MAX_VALUE_CHARS:
                raise RenderLimitError(f"join() over more than {MAX_VALUE_CHARS:,} items")
            # Measured before join() turns the items into text.
            size = measured_size(seq, MAX_VALUE_CHARS, "join()'s items")
            if size + len(sep) * max(len(seq) - 1, 0) > MAX_VALUE_CHARS:
                raise RenderLimitError(
                    f"join() would build more than {MAX_VALUE_CHARS:,} characters"
                )

    pre = {"replace": pre_replace, "join": pre_join}.get(name)
    passes_arg = hasattr(func, "jinja_pass_arg")

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        data = args[1:] if passes_arg else args
        # The filters turn their input into text (string, escape, upper, ...): measured first.
        measured_size((data, tuple(kwargs.values())), MAX_VALUE_CHARS, f"the {name} filter's input")
        if pre is not None:
            pre(data)
        result = func(*args, **kwargs)
        if isinstance(result, Iterator):  # e.g. reverse of a list: make it concrete and sized
            result = tuple(itertools.islice(result, MAX_VALUE_CHARS + 1))
        return _check_size(result, f"the {name} filter's result")

    # Keep Jinja's pass_context / pass_eval_context / pass_environment marker.
    if hasattr(func, "jinja_pass_arg"):
        guarded.jinja_pass_arg = func.jinja_pass_arg  # type: ignore[attr-defined]
    guarded.__name__ = f"guarded_{name}"
    return guarded


def _int_bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


def _safe_mul(left: Any, right: Any) -> Any:
    for seq, n in ((left, right), (right, left)):
        repeats = isinstance(seq, str | list | tuple) and isinstance(n, int)
        # The measured size, not len(): [[1] * 1000] * 1000 is a thousand lists of a thousand.
        if repeats and n > 0 and (len(seq) * n > MAX_VALUE_CHARS or _measured_times(seq, n)):
            raise RenderLimitError(
                f"repeating a value {n:,} times would exceed {MAX_VALUE_CHARS:,} characters"
            )
    if _int_bits(left) + _int_bits(right) > MAX_INT_BITS:
        raise RenderLimitError(f"a product would exceed {MAX_INT_BITS:,} bits")
    return operator.mul(left, right)


def _measured_times(seq: Any, n: int) -> bool:
    """Would `n` copies of `seq` measure more than MAX_VALUE_CHARS?"""
    try:
        return measured_size(seq, MAX_VALUE_CHARS // n, "a repeated value") * n > MAX_VALUE_CHARS
    except RenderLimitError:
        return True


def _safe_pow(left: Any, right: Any) -> Any:
    ints = isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
    if ints and right * math.log2(abs(left)) > MAX_INT_BITS:
        raise RenderLimitError(f"a power would exceed {MAX_INT_BITS:,} bits")
    return operator.pow(left, right)


def _safe_add(left: Any, right: Any) -> Any:
    sized = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
    if sized:
        measured_size((left, right), MAX_VALUE_CHARS, "adding these values")
    return operator.add(left, right)


def _safe_mod(left: Any, right: Any) -> Any:
    # "%0999999999d" % 1 would build a gigabyte: %-formatting of strings is not offered.
    if isinstance(left, str):
        raise SecurityError("string %-formatting is not allowed in templates")
    return operator.mod(left, right)


class TemplateEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with attribute, call and operator rules tightened for untrusted templates."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            optimized=False,  # no constant folding: nothing of the template runs at compile time
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_finalize,
            cache_size=0,
            auto_reload=False,
        )
        self.globals.clear()
        self.globals.update({"range": bounded_range, "choose": choose})
        self.filters = {name: _guard_filter(name, JINJA_FILTERS[name]) for name in SAFE_FILTERS}
        self.filters["_loop_guard"] = _loop_guard
        self.filters["_concat_guard"] = _concat_guard
        self.filters["_literal_guard"] = _literal_guard
        self.filters["_print_guard"] = _print_guard
        self.filters["_count_text"] = _count_text
        self.tests = {name: JINJA_TESTS[name] for name in SAFE_TESTS}
        self.binop_table.update({"*": _safe_mul, "**": _safe_pow, "+": _safe_add, "%": _safe_mod})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        return self.binop_table[operator](left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        if isinstance(attribute, str) and attribute.startswith("_"):
            raise SecurityError(f"access to attribute {attribute!r} is not allowed")
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        if isinstance(obj, str) and attribute in SAFE_STR_METHODS:
            return getattr(obj, attribute)
        if isinstance(obj, LoopContext) and attribute in SAFE_LOOP_ATTRIBUTES:
            return getattr(obj, attribute)
        if isinstance(obj, Undefined):
            return self.undefined(obj=obj, name=attribute)
        raise SecurityError(
            f"attribute {attribute!r} of a {type(obj).__name__} value is not available"
        )

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        if isinstance(argument, str):
            return self.getattr(obj, argument)
        if isinstance(obj, str | list | tuple) and isinstance(argument, int | slice):
            try:
                return obj[argument]
            except IndexError:
                return self.undefined(obj=obj, name=argument)
        if isinstance(obj, Undefined):
            return self.undefined(obj=obj, name=argument)
        raise SecurityError(f"a {type(obj).__name__} value cannot be indexed here")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        if not _is_allowed_callable(__obj):
            raise SecurityError(
                f"calling {getattr(__obj, '__name__', type(__obj).__name__)!r} is not allowed"
            )
        return __context.call(__obj, *args, **kwargs)


def _is_allowed_callable(obj: Any) -> bool:
    if obj is bounded_range or obj is choose:
        return True
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str) and name in SAFE_STR_METHODS:
        return True
    return isinstance(owner, LoopContext) and name == "cycle"


def _finalize(value: Any) -> Any:
    # A None that reaches the output means "no value": print nothing rather than "None".
    return "" if value is None else value


# --- Static checks and compilation ----------------------------------------------------------
def _guarded(node: nodes.Expr, guard: str) -> nodes.Filter:
    return nodes.Filter(node, guard, [], [], None, None, lineno=node.lineno)


class _Guarder(NodeTransformer):
    """Route loops, concatenations, literals and everything printed through the guards."""

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        guarded: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                size = nodes.Const(len(child.data), lineno=child.lineno)
                guarded += [child, _guarded(size, "_count_text")]
            else:
                guarded.append(_guarded(child, "_print_guard"))
        node.nodes = guarded
        return node

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _guarded(node, "_literal_guard")

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return _guarded(node, "_literal_guard")

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        # `{% for a, b in ... %}` and `{% set a, b = ... %}` are tuples being assigned to.
        return node if node.ctx != "load" else _guarded(node, "_literal_guard")

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_loop_guard", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(list(node.nodes), lineno=node.lineno)
        return nodes.Filter(items, "_concat_guard", [], [], None, None, lineno=node.lineno)


def _attribute_owner_path(node: nodes.Node) -> tuple[str, ...] | None:
    """`lead.custom` -> ("lead", "custom"); None when the owner is not a plain name path."""
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        inner = _attribute_owner_path(node.node)
        return None if inner is None else (*inner, node.attr)
    return None


def _check_attribute(
    owner: nodes.Node, attr: str, lineno: int, schema: ContextSchema | None
) -> None:
    if attr.startswith("_"):
        raise TemplateRuleError(f"attribute {attr!r} is not allowed (private name)", lineno)
    if schema is None:
        return
    path = _attribute_owner_path(owner)
    if path is not None and path in schema.open_namespaces:
        return
    if path is not None and len(path) == 1 and path[0] in schema.namespaces:
        known = schema.namespaces[path[0]]
        if attr not in known:
            raise TemplateRuleError(
                f"unknown attribute {path[0]}.{attr}; {path[0]} has: {', '.join(sorted(known))}",
                lineno,
            )
        return
    if attr in SAFE_STR_METHODS or attr in SAFE_LOOP_ATTRIBUTES:
        return
    raise TemplateRuleError(f"unknown attribute {attr!r}", lineno)


def check_template_ast(tree: nodes.Template, schema: ContextSchema | None) -> None:
    """Raise TemplateRuleError (with the line) for anything outside the allowed subset.

    With a schema, attribute names on its namespaces must be known; without one only the
    language rules apply (the runtime rules hold either way)."""
    lineno = 1
    for node in tree.find_all(nodes.Node):
        lineno = getattr(node, "lineno", None) or lineno  # wrapper nodes have none
        if not isinstance(node, _ALLOWED_NODES):
            what = _STATEMENT_NAMES.get(type(node).__name__, type(node).__name__)
            raise TemplateRuleError(f"{what} is not allowed in message templates", lineno)
        if isinstance(node, nodes.Filter) and node.name not in SAFE_FILTERS:
            raise TemplateRuleError(
                f"filter {node.name!r} is not allowed; allowed filters: {', '.join(SAFE_FILTERS)}",
                lineno,
            )
        if isinstance(node, nodes.Test) and node.name not in SAFE_TESTS:
            raise TemplateRuleError(
                f"test {node.name!r} is not allowed; allowed tests: {', '.join(SAFE_TESTS)}",
                lineno,
            )
        if isinstance(node, nodes.Name) and node.name.startswith("_"):
            raise TemplateRuleError(f"variable {node.name!r} is not allowed (private name)", lineno)
        if isinstance(node, nodes.For) and node.recursive:
            raise TemplateRuleError("recursive loops are not allowed", lineno)
        if isinstance(node, nodes.Getattr):
            _check_attribute(node.node, node.attr, lineno, schema)
        if isinstance(node, nodes.Getitem) and isinstance(getattr(node.arg, "value", None), str):
            _check_attribute(node.node, node.arg.value, lineno, schema)
        if isinstance(node, nodes.Call):
            _check_call(node, lineno)


def _check_call(node: nodes.Call, lineno: int | None) -> None:
    target = node.node
    if isinstance(target, nodes.Name) and target.name in GLOBAL_HELPERS:
        return
    if isinstance(target, nodes.Getattr) and (
        target.attr in SAFE_STR_METHODS or target.attr == "cycle"
    ):
        return
    raise TemplateRuleError(
        "only choose(), range() and simple string methods may be called", lineno
    )


@lru_cache(maxsize=2)
def environment(*, autoescape: bool) -> TemplateEnvironment:
    return TemplateEnvironment(autoescape=autoescape)


def parse_and_check(
    source: str, *, autoescape: bool, schema: ContextSchema | None
) -> nodes.Template:
    """Parse and apply the static rules. Raises jinja2.TemplateSyntaxError or TemplateRuleError."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateRuleError(f"the template is longer than {MAX_TEMPLATE_CHARS:,} characters")
    tree = environment(autoescape=autoescape).parse(source)
    check_template_ast(tree, schema)
    return tree


@lru_cache(maxsize=512)
def compile_source(source: str, *, autoescape: bool) -> Any:
    """The compiled template for `source`, with loops and concatenations guarded.

    Attribute names are checked against the registered schema at save time, not here: a
    render of an old version must not fail because the schema grew stricter.
    """
    env = environment(autoescape=autoescape)
    tree = parse_and_check(source, autoescape=autoescape, schema=None)
    tree = _Guarder().visit(tree)
    code = env.compile(tree, filename="<message template>")
    return env.template_class.from_code(env, code, env.make_globals(None))


def render_template(
    source: str,
    *,
    context: Mapping[str, Any],
    seed: str,
    autoescape: bool,
    plain: bool = False,
) -> str:
    """Render one part. Raises TemplateSyntaxError, TemplateRuleError, UndefinedError,
    SecurityError, RenderLimitError, or another exception from a filter (e.g. ValueError).
    `plain=True`: `context` is `plain_data`'s copy already (the parts of one message share
    it; the environment is immutable, so no part can change what the next one sees)."""
    template = compile_source(source, autoescape=autoescape)
    token = _state.set(_RenderState(seed=seed, deadline=time.monotonic() + MAX_RENDER_SECONDS))
    try:
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(context if plain else plain_data(context)):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise RenderLimitError(
                    f"the output would be longer than {MAX_OUTPUT_CHARS:,} characters"
                )
            _tick()
            chunks.append(chunk)
        return "".join(chunks)
    finally:
        _state.reset(token)


def plain_data(value: Any, _depth: int = 0) -> Any:
    """Deep-copy a context into str/int/float/bool/None, dicts with str keys and tuples.

    Any other object (a model instance, a lazy string, a Markup) becomes its plain `str()`,
    so nothing with methods or markup-safety reaches the sandbox.
    """
    if _depth > 8:
        raise ValueError("the template context is nested more than 8 levels deep")
    if type(value) is str:  # most of a context: what the str branch below gives, sooner
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str.__str__(value)  # a plain str, also for Markup and other subclasses
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain_data(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(plain_data(v, _depth + 1) for v in value)
    return str(value)
