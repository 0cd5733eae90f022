"""Render a model's own chat template in a sandboxed, bounded Jinja environment.

Templates come from model files, which may be hostile. Rendering uses Jinja's
``ImmutableSandboxedEnvironment``, so a template cannot reach Python internals, call
unsafe methods or mutate its inputs, and on top of it every render is bounded in memory
and time; anything outside the bounds raises :class:`ChatTemplateError` naming the
template's source and the limit, before the memory is allocated:

- **size**: no string or list a template builds (``*``, ``+``, ``%``, ``**`` on numbers, a
  filter such as ``center``/``indent``/``join``/``replace``, a ``str`` method) and not the
  output may exceed :data:`MAX_TEMPLATE_OUTPUT_CHARS` plus
  :data:`OUTPUT_PER_INPUT_CHAR` times the characters of the messages (a prompt is the
  messages with some markup around them); integers are capped at
  :data:`MAX_TEMPLATE_INT_BITS` bits;
- **work**: at most :data:`MAX_TEMPLATE_ITERATIONS` loop iterations (all ``for`` loops of
  the render together), :data:`MAX_TEMPLATE_STEPS` calls, attribute lookups and
  operators, and ``range()`` of at most :data:`MAX_TEMPLATE_RANGE` items;
- **time**: :data:`TEMPLATE_DEADLINE_S` seconds of rendering.

Example:
    >>> render_chat_template(
    ...     "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}",
    ...     [{"role": "user", "content": "hi"}],
    ... )
    '<user>hi'
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "MAX_TEMPLATE_INT_BITS",
    "MAX_TEMPLATE_ITERATIONS",
    "MAX_TEMPLATE_OUTPUT_CHARS",
    "MAX_TEMPLATE_RANGE",
    "MAX_TEMPLATE_STEPS",
    "OUTPUT_PER_INPUT_CHAR",
    "TEMPLATE_DEADLINE_S",
    "ChatTemplateError",
    "guarded_iter",
    "messages_to_dicts",
    "render_chat_template",
    "render_prompt",
]

#: Characters any value or the output of a render may have, on top of
#: :data:`OUTPUT_PER_INPUT_CHAR` per character of the messages.
MAX_TEMPLATE_OUTPUT_CHARS = 1 << 20
#: Characters of output allowed per character of input (messages and extra variables).
OUTPUT_PER_INPUT_CHAR = 4
#: ``for``-loop iterations in one render, all loops together.
MAX_TEMPLATE_ITERATIONS = 1_000_000
#: Calls, attribute/item lookups and intercepted operators in one render.
MAX_TEMPLATE_STEPS = 5_000_000
#: Items a template's ``range()`` may produce.
MAX_TEMPLATE_RANGE = 100_000
#: Bits an integer a template computes may have.
MAX_TEMPLATE_INT_BITS = 65_536
#: Seconds one render may take.
TEMPLATE_DEADLINE_S = 10.0

#: How often (in steps or iterations) the clock is read.
_CLOCK_EVERY = 1024
#: A ``%`` conversion's width and precision (``%-300000000.5s``).
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\d*)(?:\.(\d*))?")
#: A ``str.format`` field's spec (``{:>300000000}``); its digit runs are the sizes.
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")
_DIGITS = re.compile(r"\d+")
#: A ``str.format`` spec that takes its width from an argument (``{:>{w}}``).
_NESTED_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{")
#: Filters whose result grows with an integer argument (a width, a count of items).
_SIZED_BY_ARGUMENT = frozenset({"center", "batch", "slice"})


class ChatTemplateError(ValueError):
    """A chat template failed to render: a syntax error, a sandbox violation, its own
    ``raise_exception``, or a size, work or time limit (the message names the template's
    source and the limit)."""


class _Budget:
    """What one render may still use (kept in a context variable while it runs)."""

    def __init__(self, source: str, input_chars: int) -> None:
        self.source = source
        self.input_chars = input_chars
        self.size_limit = MAX_TEMPLATE_OUTPUT_CHARS + OUTPUT_PER_INPUT_CHAR * input_chars
        self.deadline = time.monotonic() + TEMPLATE_DEADLINE_S
        self.steps = 0
        self.iterations = 0

    def fail(self, what: str) -> ChatTemplateError:
        return ChatTemplateError(f"chat template of {self.source}: {what}")

    def size_text(self) -> str:
        return (
            f"limit {self.size_limit:,} characters = {MAX_TEMPLATE_OUTPUT_CHARS:,} + "
            f"{OUTPUT_PER_INPUT_CHAR} × the {self.input_chars:,} characters of the messages"
        )

    def check_size(self, size: int, what: str) -> None:
        if size > self.size_limit:
            raise self.fail(f"{what} would be {size:,} characters ({self.size_text()})")

    def check_value(self, value: Any, what: str) -> None:
        if isinstance(value, str | list | tuple | dict):
            self.check_size(len(value), what)
        elif isinstance(value, int) and value.bit_length() > MAX_TEMPLATE_INT_BITS:
            raise self.fail(f"{what} is an integer over {MAX_TEMPLATE_INT_BITS:,} bits")

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_TEMPLATE_STEPS:
            raise self.fail(
                f"more than {MAX_TEMPLATE_STEPS:,} operations (MAX_TEMPLATE_STEPS); "
                "the template does not terminate in reasonable work"
            )
        if self.steps % _CLOCK_EVERY == 0:
            self.check_clock()

    def iterate(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_TEMPLATE_ITERATIONS:
            raise self.fail(
                f"more than {MAX_TEMPLATE_ITERATIONS:,} loop iterations "
                "(MAX_TEMPLATE_ITERATIONS, all loops of one render together)"
            )
        if self.iterations % _CLOCK_EVERY == 0:
            self.check_clock()

    def check_clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise self.fail(
                f"rendering took more than {TEMPLATE_DEADLINE_S:g} s (TEMPLATE_DEADLINE_S)"
            )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "setraf_template_budget", default=None
)


class _GuardedIterable:
    """An iterable whose iteration counts against the render's budget (its length is the
    source's, so ``loop.length`` and ``loop.last`` work as before)."""

    def __init__(self, source: Any, budget: _Budget) -> None:
        self._source = source
        self._budget = budget

    def __len__(self) -> int:
        return len(self._source)

    def __iter__(self) -> Iterator[Any]:
        budget = self._budget
        for item in self._source:
            budget.iterate()
            yield item


def guarded_iter(iterable: Any) -> Any:
    """``iterable`` with each iteration counted against the current render's budget (the
    compiled templates wrap every ``for`` loop in it; outside a render it is returned
    unchanged)."""
    budget = _BUDGET.get()
    if budget is None:
        return iterable
    return _GuardedIterable(iterable, budget)


def _budget() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:  # pragma: no cover - the environment is only used inside a render
        raise ChatTemplateError("a bounded chat template rendered outside render_chat_template")
    return budget


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


def _check_widths(budget: _Budget, fmt: Any, what: str, *, brace: bool = False) -> None:
    """Refuse a ``%`` (or, with ``brace``, ``str.format``) format string with a field
    width or precision over the size limit (``'%300000000s'``, ``'{:>300000000}'``)."""
    if not isinstance(fmt, str):
        return
    if brace:
        numbers = [n for spec in _BRACE_SPEC.findall(fmt) for n in _DIGITS.findall(spec)]
    else:
        numbers = [n for pair in _PERCENT_SPEC.findall(fmt) for n in pair if n]
    for number in numbers:
        if len(number) > 12 or int(number) > budget.size_limit:
            budget.check_size(int(number[:13]), f"a field width in {what}")


def _check_int_args(budget: _Budget, args: Iterable[Any], what: str) -> None:
    """Refuse an integer argument over the size limit (a width, a count, a repeat)."""
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and arg > budget.size_limit:
            budget.check_size(arg, f"an argument of {what}")


def _predict_join(sep: Any, items: Any) -> int | None:
    if not isinstance(sep, str) or not isinstance(items, str | list | tuple):
        return None
    n = len(items)
    parts = sum(len(i) if isinstance(i, str) else 1 for i in items)
    return parts + len(sep) * max(n - 1, 0)


def _predict_replace(s: Any, old: Any, new: Any, count: Any = -1) -> int | None:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return None
    n = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    return len(s) + n * (len(new) - len(old))


def _predict_indent(s: Any, width: Any = 4) -> int | None:
    if not isinstance(s, str):
        return None
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    return len(s) + (s.count("\n") + 1) * max(pad, 0)


def _predict_expandtabs(s: Any, tabsize: Any = 8) -> int | None:
    if not isinstance(s, str) or not isinstance(tabsize, int):
        return None
    return len(s) + s.count("\t") * max(tabsize, 0)


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], i: int, name: str, default: Any) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _check_filter(
    budget: _Budget, name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> None:
    """Size checks, before the call, for filters whose output can outgrow their input."""
    what = f"the '{name}' filter's result"
    if name in _SIZED_BY_ARGUMENT:  # the value itself may be any number: only the widths
        _check_int_args(budget, [*args[1:], *kwargs.values()], f"the '{name}' filter")
    predicted: int | None = None
    if name == "join":
        predicted = _predict_join(
            _arg(args, kwargs, 1, "d", ""), _arg(args, kwargs, 0, "value", "")
        )
    elif name == "replace":
        predicted = _predict_replace(
            _arg(args, kwargs, 0, "s", ""),
            _arg(args, kwargs, 1, "old", ""),
            _arg(args, kwargs, 2, "new", ""),
            _arg(args, kwargs, 3, "count", None),
        )
    elif name == "indent":
        predicted = _predict_indent(
            _arg(args, kwargs, 0, "s", ""), _arg(args, kwargs, 1, "width", 4)
        )
    elif name == "format" and args:
        _check_widths(budget, args[0], "the 'format' filter")
        if isinstance(args[0], str) and "*" in args[0]:  # '%*s'|format(300000000, 'a')
            _check_int_args(budget, args[1:], "the 'format' filter")
    if predicted is not None:
        budget.check_size(predicted, what)


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with the render's size checks before and after it (keeps Jinja's
    ``pass_context``-style markers, whose leading argument is not checked)."""
    passes_arg = getattr(func, "jinja_pass_arg", None) is not None

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        values = args[1:] if passes_arg else args
        _check_filter(budget, name, values, kwargs)
        result = func(*args, **kwargs)
        budget.check_value(result, f"the '{name}' filter's result")
        return result

    return bounded


def _bounded_range(*args: int) -> range:
    budget = _budget()
    rng = range(*args)
    if len(rng) > MAX_TEMPLATE_RANGE:
        raise budget.fail(
            f"range({', '.join(map(str, args))}) has {len(rng):,} items "
            f"(MAX_TEMPLATE_RANGE = {MAX_TEMPLATE_RANGE:,})"
        )
    return rng


def _raise(message: str) -> None:
    raise ChatTemplateError(f"chat template raised: {message}")


@functools.cache
def _environment() -> Any:
    """The bounded sandbox (built once; the per-render state is in a context variable)."""
    from jinja2 import nodes
    from jinja2.compiler import CodeGenerator, Frame
    from jinja2.runtime import Context
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    guard = nodes.ImportedName(f"{__name__}.guarded_iter")

    class GuardedCodeGenerator(CodeGenerator):
        """Wraps every ``for`` loop's iterable in :func:`guarded_iter`."""

        def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
            for loop in node.find_all(nodes.For):
                loop.iter = nodes.Call(guard, [loop.iter], [], None, None, lineno=loop.lineno)
            super().visit_Template(node, frame)

    class BoundedEnvironment(ImmutableSandboxedEnvironment):
        """Size checks on operators, calls and filters; a step budget on every hook."""

        intercepted_binops = frozenset({"*", "**", "+", "%"})
        code_generator_class = GuardedCodeGenerator

        def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
            budget = _budget()
            budget.step()
            if operator == "*":
                for seq, times in ((left, right), (right, left)):
                    n = _sized(seq)
                    if n is not None and isinstance(times, int):
                        budget.check_size(n * max(times, 0), "a repeated string or list ('*')")
                if isinstance(left, int) and isinstance(right, int):
                    bits = left.bit_length() + right.bit_length()
                    if bits > MAX_TEMPLATE_INT_BITS:
                        raise budget.fail(
                            f"a product of {bits:,} bits (MAX_TEMPLATE_INT_BITS = "
                            f"{MAX_TEMPLATE_INT_BITS:,})"
                        )
            elif operator == "**":
                if isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
                    bits = right * abs(left).bit_length()
                    if bits > MAX_TEMPLATE_INT_BITS:
                        raise budget.fail(
                            f"{left}**{right} has about {bits:,} bits (MAX_TEMPLATE_INT_BITS = "
                            f"{MAX_TEMPLATE_INT_BITS:,})"
                        )
            elif operator == "+":
                a, b = _sized(left), _sized(right)
                if a is not None and b is not None:
                    budget.check_size(a + b, "a concatenation ('+')")
            elif operator == "%":
                _check_widths(budget, left, "a '%' format")
                if isinstance(left, str) and "*" in left:  # '%*s' % (300000000, 'a')
                    stars = right if isinstance(right, tuple) else (right,)
                    _check_int_args(budget, stars, "a '%' format")
            result = super().call_binop(context, operator, left, right)
            budget.check_value(result, f"the result of '{operator}'")
            return result

        def getattr(self, obj: Any, attribute: str) -> Any:
            _budget().step()
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            _budget().step()
            return super().getitem(obj, argument)

        def call(
            __self,  # Jinja's signature: the prefixes keep the keyword names free
            __context: Context,
            __obj: Any,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            budget = _budget()
            budget.step()
            what = f"{getattr(__obj, '__name__', type(__obj).__name__)}()"
            if __obj is not guarded_iter and __obj is not _bounded_range:
                _check_method(budget, __obj, args, kwargs, what)
            result = super().call(__context, __obj, *args, **kwargs)
            budget.check_value(result, f"the result of {what}")
            return result

    env = BoundedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    env.globals["range"] = _bounded_range
    env.globals.pop("lipsum", None)  # n paragraphs of filler text: no template needs it
    env.filters = {name: _bounded_filter(name, f) for name, f in env.filters.items()}
    return env


def _check_method(
    budget: _Budget, obj: Any, args: Sequence[Any], kwargs: Mapping[str, Any], what: str
) -> None:
    """Size checks, before the call, for ``str`` methods whose result can outgrow their
    receiver (``join``, ``replace``, ``expandtabs``, ``format``)."""
    name = getattr(obj, "__name__", "")
    receiver = getattr(obj, "__self__", None)
    if receiver is None:  # Jinja's sandboxed str.format wrapper
        receiver = getattr(getattr(obj, "__wrapped__", None), "__self__", None)
    if not isinstance(receiver, str):
        return
    if name in ("ljust", "rjust", "center", "zfill"):  # the result is the width
        _check_int_args(budget, [*args, *kwargs.values()], what)
    predicted: int | None = None
    if name == "join" and args:
        predicted = _predict_join(receiver, args[0])
    elif name == "replace" and len(args) >= 2:
        predicted = _predict_replace(receiver, args[0], args[1], _arg(args, kwargs, 2, "count", -1))
    elif name == "expandtabs":
        predicted = _predict_expandtabs(receiver, _arg(args, kwargs, 0, "tabsize", 8))
    elif name in ("format", "format_map"):
        _check_widths(budget, receiver, what, brace=True)
        if _NESTED_SPEC.search(receiver):  # '{:>{w}}'.format('a', w=300000000)
            _check_int_args(budget, [*args, *kwargs.values()], what)
    if predicted is not None:
        budget.check_size(predicted, f"the result of {what}")


def _input_chars(messages: Sequence[Mapping[str, Any]], extra: Mapping[str, Any]) -> int:
    size = sum(len(str(v)) for m in messages for v in m.values())
    for value in extra.values():
        size += len(value) if isinstance(value, str) else len(json.dumps(value, default=str))
    return size


def render_chat_template(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    source: str = "the model",
    **extra: Any,
) -> str:
    """Render ``template`` with ``messages`` (``[{"role": ..., "content": ...}]``).

    Args:
        template: The Jinja chat template (from a model file: untrusted).
        messages: The conversation.
        add_generation_prompt: Passed to the template.
        source: What error messages call the template's origin (a file path, a model).
        **extra: More template variables (``bos_token``, ``eos_token``, ``tools``...).

    Raises:
        ChatTemplateError: The template is invalid, breaks the sandbox, raises, or
            exceeds a size, work or time limit (see the module docstring).
    """
    from jinja2.exceptions import SecurityError, TemplateError

    env = _environment()
    variables = {
        "bos_token": extra.pop("bos_token", ""),
        "eos_token": extra.pop("eos_token", ""),
        **extra,
    }
    dicts = [dict(m) for m in messages]
    budget = _Budget(source, _input_chars(dicts, variables))
    token = _BUDGET.set(budget)
    try:
        compiled = env.from_string(template)
        pieces: list[str] = []
        size = 0
        for piece in compiled.generate(
            messages=dicts, add_generation_prompt=add_generation_prompt, **variables
        ):
            size += len(piece)
            budget.check_size(size, "the rendered prompt")
            pieces.append(piece)
        return "".join(pieces)
    except ChatTemplateError:
        raise
    except SecurityError as exc:
        raise ChatTemplateError(
            f"chat template of {source} blocked by the sandbox: {exc}"
        ) from None
    except TemplateError as exc:
        raise ChatTemplateError(f"chat template of {source} failed: {exc}") from None
    except (MemoryError, RecursionError, OverflowError) as exc:
        raise ChatTemplateError(
            f"chat template of {source} failed: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        _BUDGET.reset(token)


def messages_to_dicts(messages: Sequence[Any]) -> list[dict[str, str]]:
    """LangChain messages → ``[{"role", "content"}]`` with the usual role names."""
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    out = []
    for m in messages:
        role = roles.get(getattr(m, "type", ""), getattr(m, "type", "user"))
        content = m.content if isinstance(m.content, str) else str(m.content)
        out.append({"role": role, "content": content})
    return out


def render_prompt(
    template: str | None,
    messages: Sequence[Mapping[str, Any]],
    *,
    bos: str = "",
    eos: str = "",
    source: str = "the model",
) -> str:
    """The model's own template (sandboxed, bounded), or a plain ``role: content``
    transcript for base models that ship none. ``source`` names the template's origin
    in errors."""
    if not template:
        body = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
        return body + "\nassistant:"
    return render_chat_template(
        template,
        messages,
        add_generation_prompt=True,
        source=source,
        bos_token=bos,
        eos_token=eos,
    )
