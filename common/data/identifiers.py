"""Identifier columns and their formats: the values a synthetic id column is given, unique and in
the declared form. :class:`IdColumn` is the schema's declaration (read by ``id_from_json``).

An id column (SDV's ``sdtype: "id"``) names rows and says nothing about the population, so it is
never learned from; a sample gets fresh values instead. Numeric ids (SDV's default) are the
integers ``start, start + 1, ...``; a ``regex_format`` such as ``ID_[0-9]{5}`` is enumerated like
an odometer (``ID_00000``, ``ID_00001``, ...), so values are unique by construction.

Only a regex subset whose values can be enumerated exactly is read: literal characters, ``\\d``,
escaped punctuation (``\\.``, ``\\-``), character classes of characters and ranges (``[A-Z]``,
``[a-z0-9_]``), each optionally repeated ``{n}`` or ``{m,n}``. A repeat ``{m,n}`` is always
written ``n`` long (the longest spelling gives the most values, and the pattern allows it).
Anything else (``.``, ``*``, ``+``, ``?``, groups, alternation, negated classes, anchors) is
refused rather than guessed at. No dependency (rstr, exrex) is needed for this subset.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from math import prod
from typing import Any

from fedsynth.common.errors import SchemaError

SUPPORTED = r"literal characters, \d, escaped punctuation, classes such as [A-Z0-9], counts {n} and {m,n}"
MAX_ID_CHARS = 256  # an id longer than this is a mistake in the pattern, not an identifier
NUMERIC_CAPACITY = 2**63  # numeric ids are int64
_SPECIAL = frozenset(".^$*+?()[]{}|\\")
_COUNT_RE = re.compile(r"\{(\d+)(?:,(\d+))?\}")
ID_TYPE = "id"  # the column type of an identifier in fedsynth's schema JSON


@dataclass(frozen=True)
class IdFormat:
    """A parsed ``regex_format``: one alphabet per character of the generated ids.

    Raises ValueError (saying what is not supported, and where) on a pattern outside the subset.
    """

    pattern: str
    slots: tuple[str, ...] = field(init=False, repr=False)
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        slots = _slots(self.pattern)
        if not slots:
            raise ValueError("the pattern is empty")
        if len(slots) > MAX_ID_CHARS:
            raise ValueError(f"it spells ids of {len(slots)} characters, more than {MAX_ID_CHARS}")
        object.__setattr__(self, "slots", tuple(slots))
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    @property
    def capacity(self) -> int:
        """How many distinct ids the format gives."""
        return prod(len(a) for a in self.slots)

    def value(self, k: int) -> str:
        """The ``k``-th id (0-based): ``k`` written in the mixed radix of the slots' alphabets."""
        chars = []
        for alphabet in reversed(self.slots):
            k, digit = divmod(k, len(alphabet))
            chars.append(alphabet[digit])
        return "".join(reversed(chars))

    def matches(self, text: str) -> bool:
        return self._regex.fullmatch(text) is not None


@dataclass(frozen=True)
class IdColumn:
    """A column of identifiers: kept in the table's layout, never learned from.

    An id names a row and carries no information about the population, so it is left out of
    the encoder, the training, the counts release, the constraints and the report: nothing
    about it leaves an institution. A sample gets fresh ids, unique within it, in the declared
    format (:mod:`fedsynth.common.data.identifiers`), at ``position``.

    Attributes:
        name: column name as it appears in every party's table.
        position: the column's index in the table (identifier columns included, dropped ones not).
        regex_format: SDV's ``regex_format`` (e.g. ``ID_[0-9]{5}``); unset: integers 0, 1, ...
        description: free text.
    """

    name: str
    position: int
    regex_format: str | None = None
    description: str = ""

    @property
    def format(self) -> IdFormat | None:
        """The parsed ``regex_format`` (None: numeric ids); raises ValueError on an unsupported one."""
        return None if self.regex_format is None else IdFormat(self.regex_format)

    def check_room(self, rows: int) -> None:
        """Refuse ``rows`` ids when the format has fewer distinct values than that."""
        room = capacity(self.format)
        if rows > room:
            raise SchemaError(f"column {self.name!r}: the id format {self.regex_format!r} gives {room:,} distinct "
                              f"values, fewer than the {rows:,} rows asked for; declare a longer 'regex_format'")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": ID_TYPE}
        if self.regex_format is not None:
            out["regex_format"] = self.regex_format
        if self.description:
            out["description"] = self.description
        return out


_ID_KEYS = {"name", "type", "regex_format", "description"}


def id_from_json(raw: dict[str, Any], source: str, index: int) -> IdColumn:
    """An id column: only a name, the optional regex_format and a description apply to it."""
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SchemaError(f"{source}: column #{index}: 'name' must be a non-empty string, got {name!r}")
    where = f"{source}: column {name!r}"
    unknown = set(raw) - _ID_KEYS
    if unknown:
        raise SchemaError(f"{where}: {sorted(unknown)} do not apply to an id column (its values are regenerated, "
                          f"never modelled); it takes only {sorted(_ID_KEYS - {'name', 'type'})}")
    for key in ("regex_format", "description"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise SchemaError(f"{where}: '{key}' must be a string, got {raw[key]!r}")
    return IdColumn(name=name, position=index, regex_format=raw.get("regex_format"),
                    description=raw.get("description") or "")


def id_problem(col: IdColumn, width: int, source: str) -> str:
    """What is wrong with an id column ('' when nothing): its position, or a regex outside the subset."""
    where = f"{source}: column {col.name!r}"
    if not isinstance(col.position, int) or not 0 <= col.position < width:
        return f"{where}: id position {col.position!r} is not within the table's {width} columns"
    if col.regex_format is not None and not isinstance(col.regex_format, str):
        return f"{where}: 'regex_format' must be a string, got {col.regex_format!r}"
    try:
        col.format
    except ValueError as exc:
        return f"{where}: regex_format {col.regex_format!r} is not supported ({exc}); fedsynth reads {SUPPORTED}"
    return ""


def id_values(fmt: IdFormat | None, start: int, n: int) -> list[int] | list[str]:
    """Ids ``start .. start + n - 1`` of a format (``None``: numeric); distinct for distinct indices."""
    if fmt is None:
        return list(range(start, start + n))
    return [fmt.value(k) for k in range(start, start + n)]


def capacity(fmt: IdFormat | None) -> int:
    return NUMERIC_CAPACITY if fmt is None else fmt.capacity


def infer_format(values: Iterable[str]) -> str | None:
    """A ``regex_format`` every value fits, read position by position, or None.

    Only for values of one length: a position holding one character everywhere is a literal
    (a digit excepted: digits are counters, and a few rows share leading zeros), else the
    narrowest of ``[0-9]``, ``[A-Z]``, ``[a-z]``, ``[A-Za-z0-9]`` holding all of them. Runs of
    one class are written with a count (``ID_[0-9]{5}``).
    """
    texts = list(values)
    if not texts or len({len(t) for t in texts}) != 1 or not texts[0]:
        return None
    classes = []
    for chars in zip(*texts):
        seen = set(chars)
        if len(seen) == 1 and chars[0] not in string.digits:
            c = chars[0]
            classes.append("\\" + c if c in _SPECIAL else c)
            continue
        for name, alphabet in (("[0-9]", string.digits), ("[A-Z]", string.ascii_uppercase),
                               ("[a-z]", string.ascii_lowercase),
                               ("[A-Za-z0-9]", string.ascii_letters + string.digits)):
            if seen <= set(alphabet):
                classes.append(name)
                break
        else:
            return None
    runs: list[list[object]] = []
    for cls in classes:
        if runs and runs[-1][0] == cls and cls.startswith("["):
            runs[-1][1] += 1  # type: ignore[operator]
        else:
            runs.append([cls, 1])
    return "".join(f"{c}{{{n}}}" if n > 1 else str(c) for c, n in runs)


def _slots(pattern: str) -> list[str]:
    slots: list[str] = []
    i = 0
    while i < len(pattern):
        alphabet, i = _atom(pattern, i)
        lo = hi = 1
        count = _COUNT_RE.match(pattern, i)
        if count:
            lo = int(count[1])
            hi = int(count[2]) if count[2] is not None else lo
            if hi < 1 or hi < lo:
                raise ValueError(f"the count {count[0]!r} at position {i} repeats nothing or runs backwards")
            i = count.end()
        if hi > MAX_ID_CHARS:
            raise ValueError(f"the count {count[0]!r} spells ids longer than {MAX_ID_CHARS} characters")  # type: ignore[index]
        slots.extend([alphabet] * hi)
    return slots


def _atom(pattern: str, i: int) -> tuple[str, int]:
    """The alphabet of the character (or class) at ``i``, and where the next one starts."""
    c = pattern[i]
    if c == "\\":
        return _escape(pattern, i), i + 2
    if c == "[":
        return _class(pattern, i)
    if c in _SPECIAL:
        raise ValueError(f"{c!r} at position {i} is not supported")
    return c, i + 1


def _escape(pattern: str, i: int) -> str:
    if i + 1 >= len(pattern):
        raise ValueError("the pattern ends in a lone backslash")
    nxt = pattern[i + 1]
    if nxt == "d":
        return string.digits
    if nxt.isascii() and not nxt.isalnum() and not nxt.isspace():
        return nxt
    raise ValueError(f"the escape '\\{nxt}' at position {i} is not supported")


def _class(pattern: str, start: int) -> tuple[str, int]:
    """A ``[...]`` class from ``start``: its characters (sorted, each once) and the index after ``]``."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        raise ValueError(f"the negated class at position {start} is not supported")
    chars: set[str] = set()
    while i < len(pattern) and pattern[i] != "]":
        if pattern[i] == "\\":
            chars.update(_escape(pattern, i))
            i += 2
        elif i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            lo, hi = pattern[i], pattern[i + 2]
            if lo > hi or "\\" in (lo, hi) or "[" in (lo, hi):
                raise ValueError(f"the range {lo}-{hi} at position {i} is not supported")
            chars.update(chr(o) for o in range(ord(lo), ord(hi) + 1))
            i += 3
        elif pattern[i] == "[":
            raise ValueError(f"'[' inside the class at position {start} is not supported")
        else:
            chars.add(pattern[i])
            i += 1
    if i >= len(pattern):
        raise ValueError(f"the class at position {start} has no closing ']'")
    if not chars:
        raise ValueError(f"the class at position {start} is empty")
    return "".join(sorted(chars)), i + 1
