"""Campaigns as code: `campaign load FILE.toml` and `campaign dump C`.

One TOML file describes a venture, its ICP segments and one campaign (format: docs/CAMPAIGN_TOML.md).
`campaign_load` is an idempotent upsert by slug inside one transaction: a record the file names
gets exactly the values the file gives (a key left out means its default), every creation and every
changed field is audited with before/after, and a file that fails anywhere writes nothing. Status,
kill switches and a venture's active flag are never set by a file; `campaign.mode` goes through
`campaign_set_mode`, which refuses to take a running campaign live while preflight fails.

Section registry
----------------
Apps to the right of `ventures` (templating, outreach) add their own top-level parts of the file
without `ventures` importing them. In their AppConfig.ready() they call::

    register_section("templates", load=templates_load, dump=templates_dump, order=20)

- `load(data, *, campaign, venture, actor, locate)` gets the section's parsed TOML value (`data`),
  runs inside the load's transaction after the venture, segments and campaign are saved, and raises
  CampaignCodeError on bad data, which rolls the whole load back. Build that error with
  `locate.error(("templates", 2, "subject"), "must not be empty")`, which gives
  "FILE:LINE: templates[2].subject: must not be empty"; `locate(path)` alone returns the line
  number (of the key, or of the nearest enclosing table when the key is absent). A ValidationError
  or DomainError escaping `load` is reported against the section's line. `load` may return a
  mapping of counts such as {"created": 1, "updated": 0, "unchanged": 3}; any count other than
  "unchanged" marks the load as a change. It audits its own writes (ventures.services).
- `dump(campaign)` returns the section's TOML-ready value (a table or a list of tables), or None to
  leave the section out of the dump. A dump must load back without changes.
- `order` sets the order of loading and dumping among sections (lower first).
- `confirms_raises=True`: `load` also gets `raise_reason` (the load's confirmed reason, or "")
  and refuses, with LimitRaiseNotConfirmedError, a change that lets a running or paused
  campaign send more without one (the outbox's mailboxes).

A section may describe its tables with the same `Key` schemas as the core ones and reuse the
core's machinery, so that its keys are read, checked, saved and audited alike:
`read_table(item, SCHEMA, Model, ("mailboxes", 0), locate)` (types, defaults, unknown keys
with a suggestion), `Upserter.for_section(locate=..., actor=...).record(...)` (validated,
saved with only the changed fields, audited `ENTITY.create` / `ENTITY.update`, secrets masked)
and `dump_table(instance, SCHEMA)`.

A section missing from a file is not loaded at all: what the database holds stays as it is.
Unknown top-level keys (neither core nor registered) are errors.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import difflib
import functools
import re
import tomllib
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Protocol

import tomli_w
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, models, transaction

from ventures.console import RAISE_REASON_MAX, LimitRaise, limit_raises
from ventures.models import WEEKDAY_NAMES, Campaign, Channel, IcpSegment, SendMode, Venture
from ventures.services import DomainError, audit_record, campaign_set_mode, snapshot
from ventures.text import data_text_problem

KeyPath = tuple[str | int, ...]


class CampaignCodeError(Exception):
    """A file that cannot be loaded; the one-line message starts with `FILE:LINE:` when it can."""


class LimitRaiseNotConfirmedError(CampaignCodeError):
    """The file raises a running or paused campaign's limits (`ventures.console.limit_raises`)
    and the load was not given a reason to confirm it; `raises` lists them. `confirm_to` says
    what a confirmed load does ("to raise the limits of campaign 'q3'", "to re-activate
    mailbox 'sam@x', which raises the sending capacity of running campaign 'q3'"): the
    `campaign load` refusal ends with it, so the operator reads what they would confirm."""

    def __init__(self, message: str, raises: list[LimitRaise], *, confirm_to: str = "") -> None:
        super().__init__(message)
        self.raises = raises
        self.confirm_to = confirm_to or "to raise these limits"


# --------------------------------------------------------------------------------------------
# Where keys are: tomllib keeps no positions, so a small scanner maps key paths to lines.


class Locator:
    """Maps key paths of a TOML text to line numbers: `locate(("campaign", "send_window", "end"))`.

    Array-of-tables elements are numbered from 0 (`("segments", 1, "slug")`). A path the text
    does not contain resolves to its first nested key, else to the nearest enclosing table that
    is there, else to line 1.
    """

    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self._lines: dict[KeyPath, int] = {}
        # The text parsed with tomllib already; a scanner gap costs precision, never a load.
        with contextlib.suppress(IndexError, ValueError, tomllib.TOMLDecodeError):
            _Scanner(text, self._lines).run()

    def __call__(self, path: KeyPath) -> int:
        path = tuple(path)
        for size in range(len(path), 0, -1):
            line = self._first_line(path[:size])
            if line is not None:
                return line
        return 1

    def error(self, path: KeyPath, message: str) -> CampaignCodeError:
        """The error to raise for a problem at `path`: "FILE:LINE: dotted.path: message"."""
        where = f"{dotted(path)}: " if path else ""
        return CampaignCodeError(f"{self.filename}:{self(path)}: {where}{message}")

    def _first_line(self, prefix: KeyPath) -> int | None:
        if prefix in self._lines:
            return self._lines[prefix]
        nested = [line for p, line in self._lines.items() if p[: len(prefix)] == prefix]
        return min(nested) if nested else None


def heading(path: KeyPath) -> str:
    """The TOML header of the table at `path`: `[campaign.sender]`, `[[sequences.steps]]`."""
    name = ".".join(part for part in path if isinstance(part, str))
    return f"[[{name}]]" if path and isinstance(path[-1], int) else f"[{name}]"


def dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = ",]}\n#"


class _Scanner:
    """Walks a valid TOML text once, recording the line of every header, key and array item."""

    def __init__(self, text: str, out: dict[KeyPath, int]) -> None:
        self.s, self.i, self.line, self.out = text, 0, 1, out
        self.table: KeyPath = ()
        self.arrays: dict[KeyPath, int] = {}  # array-of-tables path -> elements seen so far

    def run(self) -> None:
        while True:
            self._skip(newlines=True)
            if self.i >= len(self.s):
                return
            if self.s.startswith("[[", self.i):
                self._array_header()
            elif self.s[self.i] == "[":
                self.i += 1
                self.table = self._resolve(self._key())
                self.out.setdefault(self.table, self.line)
                self._skip()
                self.i += 1  # ]
            else:
                self._pair(self.table)

    def _array_header(self) -> None:
        self.i += 2
        keys = self._key()
        array = (*self._resolve(keys[:-1]), keys[-1])
        self.arrays[array] = self.arrays.get(array, 0) + 1
        self.table = (*array, self.arrays[array] - 1)
        self.out.setdefault(array, self.line)
        self.out[self.table] = self.line
        self._skip()
        self.i += 2  # ]]

    def _resolve(self, keys: list[str]) -> KeyPath:
        """A header's path, with the current element index after each array of tables."""
        path: KeyPath = ()
        for key in keys:
            path = (*path, key)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def _pair(self, table: KeyPath) -> None:
        line = self.line
        keys = self._key()
        for size in range(1, len(keys) + 1):
            self.out.setdefault((*table, *keys[:size]), line)
        self._skip()
        self.i += 1  # =
        self._skip()
        self._value((*table, *keys))

    def _key(self) -> list[str]:
        keys = []
        while True:
            self._skip()
            char = self.s[self.i]
            if char in "\"'":
                raw = self._string()
                keys.append(tomllib.loads(f"k = {raw}")["k"])
            else:
                match = _BARE_KEY.match(self.s, self.i)
                if match is None:
                    raise ValueError("not a key")
                keys.append(match.group())
                self.i = match.end()
            self._skip()
            if self.i < len(self.s) and self.s[self.i] == ".":
                self.i += 1
                continue
            return keys

    def _value(self, path: KeyPath) -> None:
        self.out.setdefault(path, self.line)
        char = self.s[self.i]
        if char in "\"'":
            self._string()
        elif char == "[":
            self.i += 1
            index = 0
            while True:
                self._skip(newlines=True)
                if self.s[self.i] == "]":
                    self.i += 1
                    return
                self._value((*path, index))
                index += 1
                self._skip(newlines=True)
                if self.s[self.i] == ",":
                    self.i += 1
        elif char == "{":
            self.i += 1
            while True:
                self._skip()
                if self.s[self.i] == "}":
                    self.i += 1
                    return
                self._pair(path)
                self._skip()
                if self.s[self.i] == ",":
                    self.i += 1
        else:
            start = self.i
            while self.i < len(self.s) and self.s[self.i] not in _SCALAR_END:
                self.i += 1
            if self.i == start:
                raise ValueError("empty value")

    def _string(self) -> str:
        """Consume one string of any of the four kinds and return its source text."""
        start, quote = self.i, self.s[self.i]
        if self.s.startswith(quote * 3, self.i):
            self.i += 3
            while not self.s.startswith(quote * 3, self.i):
                self._advance(escapes=quote == '"')
            self.i += 3
            while self.i < len(self.s) and self.s[self.i] == quote:  # up to two quotes end it
                self.i += 1
        else:
            self.i += 1
            while self.s[self.i] != quote:
                self._advance(escapes=quote == '"')
            self.i += 1
        return self.s[start : self.i]

    def _advance(self, *, escapes: bool) -> None:
        step = 2 if escapes and self.s[self.i] == "\\" else 1
        self.line += self.s.count("\n", self.i, self.i + step)
        self.i += step
        if self.i > len(self.s):
            raise ValueError("unterminated string")

    def _skip(self, *, newlines: bool = False) -> None:
        """Skip spaces and comments (and line breaks when `newlines`)."""
        while self.i < len(self.s):
            char = self.s[self.i]
            if char in " \t\r" or (newlines and char == "\n"):
                self.line += char == "\n"
                self.i += 1
            elif char == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            else:
                return


# --------------------------------------------------------------------------------------------
# The format: which keys exist, their types, and the model field behind each.


@dataclasses.dataclass(frozen=True)
class Key:
    """One key of the file: the model attribute it sets and how its TOML value is read.

    A key left out of the file means the model field's default (on creation and on update).
    """

    attr: str
    kind: str
    required: bool = False


Schema = Mapping[str, "Key | Schema"]

VENTURE_KEYS: Schema = {
    "slug": Key("slug", "slug", required=True),
    "name": Key("name", "text", required=True),
    "offer_summary": Key("offer_summary", "text"),
    "primary_cta": Key("primary_cta", "text"),
    "default_channels": Key("default_channels", "channels"),
    "timezone": Key("timezone", "text"),
    "owner_name": Key("owner_name", "text"),
    "owner_email": Key("owner_email", "text"),
    "postal_address": Key("postal_address", "text"),
    "daily_send_limit": Key("daily_send_limit", "optional_count"),
}
SEGMENT_KEYS: Schema = {
    "slug": Key("slug", "slug", required=True),
    "name": Key("name", "text", required=True),
    "priority": Key("priority", "count"),
    "firmographic_notes": Key("firmographic_notes", "text"),
    "psychographic_notes": Key("psychographic_notes", "text"),
    "industries": Key("industries", "strings"),
    "title_keywords": Key("title_keywords", "strings"),
    "countries": Key("countries", "strings"),
    "company_size_min": Key("company_size_min", "optional_count"),
    "company_size_max": Key("company_size_max", "optional_count"),
}
CAMPAIGN_KEYS: Schema = {
    "slug": Key("slug", "slug", required=True),
    "name": Key("name", "text", required=True),
    "objective": Key("objective", "text"),
    "mode": Key("mode", "mode"),
    "daily_send_limit": Key("daily_send_limit", "count"),
    "timezone": Key("timezone", "text"),
    "value_per_positive_reply": Key("value_per_positive_reply", "money"),
    "fixed_cost": Key("fixed_cost", "money"),
    "cost_per_email": Key("cost_per_email", "money"),
    "reply_sla_hours": Key("reply_sla_hours", "count"),
    "send_window": {
        "days": Key("send_days", "weekdays"),
        "start": Key("send_window_start", "time"),
        "end": Key("send_window_end", "time"),
    },
    "warmup": {
        "start_limit": Key("warmup_start_limit", "optional_count"),
        "daily_increase": Key("warmup_daily_increase", "count"),
    },
    "sender": {
        "name": Key("sender_name", "text"),
        "email": Key("sender_email", "text"),
        "reply_to": Key("reply_to", "text"),
    },
}
CORE_SECTIONS = ("venture", "segments", "campaign")
_DAY_NAMES = {
    **{name: str(n) for n, name in enumerate(WEEKDAY_NAMES, 1)},
    **{
        name: str(n)
        for n, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"), 1
        )
    },
}
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def _attr_paths(schema: Schema, prefix: KeyPath) -> dict[str, KeyPath]:
    """model attribute -> the key path that sets it (for naming validation errors)."""
    paths: dict[str, KeyPath] = {}
    for name, spec in schema.items():
        if isinstance(spec, Key):
            paths[spec.attr] = (*prefix, name)
        else:
            paths.update(_attr_paths(spec, (*prefix, name)))
    return paths


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f'a string ("{value[:40]}")'
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__.replace('datetime', 'date-time')} ({value})"


def _expected(what: str, value: Any) -> str:
    hint = (
        " (write it without quotes)"
        if isinstance(value, str) and what.startswith("a whole")
        else ""
    )
    return f"expected {what}, got {_describe(value)}{hint}"


def _convert(kind: str, value: Any, path: KeyPath, loc: Locator) -> Any:
    """Read one TOML value into what the model field holds, or raise an error naming its line."""
    return _CONVERTERS[kind](value, path, loc)


def _text(value: Any, path: KeyPath, loc: Locator) -> str:
    if not isinstance(value, str):
        raise loc.error(path, _expected("a string", value))
    return value


def _slug(value: Any, path: KeyPath, loc: Locator) -> str:
    try:
        validate_slug(_text(value, path, loc))
    except ValidationError:
        raise loc.error(
            path, f"{value!r} is not a slug: use letters, digits, hyphens, underscores"
        ) from None
    return value


def _mode(value: Any, path: KeyPath, loc: Locator) -> str:
    if _text(value, path, loc) not in SendMode.values:
        raise loc.error(path, f"{value!r} is not a mode: use proof or live")
    return value


def _count(value: Any, path: KeyPath, loc: Locator) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise loc.error(path, _expected("a whole number", value))
    if value < 0:
        raise loc.error(path, f"must be 0 or more, not {value}")
    return value


def _strings(value: Any, path: KeyPath, loc: Locator) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise loc.error(path, _expected("an array of strings", value))
    return value


def _channels(value: Any, path: KeyPath, loc: Locator) -> list[str]:
    for index, item in enumerate(_strings(value, path, loc)):
        if item not in Channel.values:
            raise loc.error(
                (*path, index),
                f"unknown channel {item!r}{did_you_mean(item, Channel.values)}"
                f" (channels: {', '.join(Channel.values)})",
            )
    return value


def _weekdays(value: Any, path: KeyPath, loc: Locator) -> str:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise loc.error(path, _expected('an array of weekday names such as ["mon", "tue"]', value))
    if not value:
        raise loc.error(path, "name at least one weekday")
    digits = []
    for index, name in enumerate(value):
        word = name.strip().lower()
        digit = _DAY_NAMES.get(word)
        if digit is None:
            hint = did_you_mean(word, list(WEEKDAY_NAMES)) or did_you_mean(word, list(_DAY_NAMES))
            raise loc.error(
                (*path, index),
                f"{name!r} is not a weekday{hint} (use mon, tue, wed, thu, fri, sat, sun)",
            )
        if digit in digits:
            raise loc.error((*path, index), f"{name!r} is listed twice")
        digits.append(digit)
    return "".join(sorted(digits))


def _time(value: Any, path: KeyPath, loc: Locator) -> dt.time:
    if isinstance(value, dt.time) and value.tzinfo is None:
        return value
    match = _TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise loc.error(path, _expected('a time of day such as "09:00"', value))
    try:
        return dt.time(*(int(part) for part in match.groups(default="0")))
    except ValueError:
        raise loc.error(path, f"{value!r} is not a valid time of day") from None


def _money(value: Any, path: KeyPath, loc: Locator) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise loc.error(path, _expected('an amount such as 1500 or "1500.00"', value))
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise loc.error(path, f"{value!r} is not an amount of money") from None
    if not amount.is_finite():
        raise loc.error(path, f"{value!r} is not an amount of money")
    if amount < 0:
        raise loc.error(path, f"must be 0 or more, not {value}")
    # Stored with 2 decimal places; more than 2 is left for the model to refuse.
    return amount.quantize(Decimal("0.01")) if amount.as_tuple().exponent >= -2 else amount


def _bool(value: Any, path: KeyPath, loc: Locator) -> bool:
    if not isinstance(value, bool):
        raise loc.error(path, _expected("true or false", value))
    return value


def _date(value: Any, path: KeyPath, loc: Locator) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):
        raise loc.error(path, _expected("a date such as 2026-09-01", value))
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise loc.error(path, f"{value!r} is not a date such as 2026-09-01") from None


_CONVERTERS: dict[str, Callable[[Any, KeyPath, Locator], Any]] = {
    "text": _text,
    "slug": _slug,
    "mode": _mode,
    "count": _count,
    "optional_count": _count,  # the same in the file; left out, it means none, not 0
    "strings": _strings,
    "channels": _channels,
    "weekdays": _weekdays,
    "time": _time,
    "money": _money,
    "bool": _bool,
    "date": _date,
}


def read_table(
    value: Any,
    schema: Schema,
    model: type[models.Model],
    path: KeyPath,
    loc: Locator,
    *,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Every attribute the schema covers, from the file or the model's default. Keys in
    `extra` are allowed in the table and left for the caller to read."""
    if not isinstance(value, dict):
        raise loc.error(path, _expected(f"a table ({heading(path)})", value))
    _check_keys(value, [*schema, *extra], path, loc)
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        if isinstance(spec, Key):
            if name in value:
                out[spec.attr] = _convert(spec.kind, value[name], (*path, name), loc)
            elif spec.required:
                raise loc.error((*path, name), "required key is missing")
            else:
                out[spec.attr] = _default(model, spec)
        else:
            out.update(read_table(value.get(name, {}), spec, model, (*path, name), loc))
    return out


def _default(model: type[models.Model], spec: Key) -> Any:
    default = model._meta.get_field(spec.attr).get_default()
    if spec.kind == "money":  # as the database gives it back, so that reloads compare equal
        return Decimal(default).quantize(Decimal("0.01"))
    return default


def _check_keys(value: dict, known: list[str], path: KeyPath, loc: Locator) -> None:
    for name in value:
        if name not in known:
            where = f" in {heading(path)}" if path else ""
            hint = did_you_mean(name, known) or f" (known keys: {', '.join(known)})"
            raise loc.error((*path, name), f"unknown key {name!r}{where}{hint}")


# --------------------------------------------------------------------------------------------
# The section registry.


class SectionLoad(Protocol):
    def __call__(
        self,
        data: Any,
        *,
        campaign: Campaign,
        venture: Venture,
        actor: str,
        locate: Locator,
    ) -> Mapping[str, int] | None: ...


@dataclasses.dataclass(frozen=True)
class Section:
    key: str
    load: SectionLoad
    dump: Callable[[Campaign], Any]
    order: int
    # Its load also takes `raise_reason` (the load's --reason, "" without --confirm-raise):
    # a section whose records can raise what a running or paused campaign sends (mailboxes).
    confirms_raises: bool = False


_SECTIONS: dict[str, Section] = {}


def register_section(
    key: str,
    *,
    load: SectionLoad,
    dump: Callable[[Campaign], Any],
    order: int = 100,
    confirms_raises: bool = False,
) -> None:
    """Add a top-level section to the file format (see the module docstring for the contract).

    Registering the same functions again is a no-op; another pair under a taken key is refused.
    """
    if key in CORE_SECTIONS:
        raise ValueError(f"{key!r} is a core part of the campaign file, not a section.")
    existing = _SECTIONS.get(key)
    if existing is not None and (existing.load, existing.dump) != (load, dump):
        raise ValueError(f"Section {key!r} is already registered by {existing.load.__module__}.")
    _SECTIONS[key] = Section(
        key=key, load=load, dump=dump, order=order, confirms_raises=confirms_raises
    )


def unregister_section(key: str) -> None:
    """Remove a section (for tests that register one of their own)."""
    _SECTIONS.pop(key, None)


def registered_sections() -> list[Section]:
    return sorted(_SECTIONS.values(), key=lambda s: (s.order, s.key))


# --------------------------------------------------------------------------------------------
# Loading.


@dataclasses.dataclass
class Change:
    """What a load did to one record: created, updated (with the file keys that changed) or
    unchanged."""

    entity: str
    slug: str
    action: str
    fields: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"slug": self.slug, "action": self.action, "fields": self.fields}


@dataclasses.dataclass
class LoadResult:
    path: str
    venture: Venture
    campaign: Campaign
    venture_change: Change
    segment_changes: list[Change]
    campaign_change: Change
    sections: dict[str, dict[str, int]]

    @property
    def changed(self) -> bool:
        records = [self.venture_change, *self.segment_changes, self.campaign_change]
        return any(c.action != "unchanged" for c in records) or any(
            count
            for counts in self.sections.values()
            for verb, count in counts.items()
            if verb != "unchanged"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "changed": self.changed,
            "venture": self.venture_change.as_dict(),
            "segments": [c.as_dict() for c in self.segment_changes],
            "campaign": {
                **self.campaign_change.as_dict(),
                "status": self.campaign.status,
                "mode": self.campaign.mode,
            },
            "sections": self.sections,
        }

    def summary(self) -> str:
        records = [self.venture_change, *self.segment_changes, self.campaign_change]
        done = [
            f"{c.entity} {c.slug} {c.action}" + (f" ({', '.join(c.fields)})" if c.fields else "")
            for c in records
            if c.action != "unchanged"
        ]
        done += [
            f"{key}: " + ", ".join(f"{count} {verb}" for verb, count in counts.items() if count)
            for key, counts in self.sections.items()
            if any(count for verb, count in counts.items() if verb != "unchanged")
        ]
        what = "; ".join(done) if self.changed else "no changes, the database already matches"
        return (
            f"Loaded {self.path}: {what}. Campaign {self.campaign.slug} is "
            f"{self.campaign.get_status_display()}, {self.campaign.mode} mode."
        )


@dataclasses.dataclass
class _Plan:
    """The file, checked and converted, before anything touches the database."""

    venture: dict[str, Any]
    segments: list[dict[str, Any]]
    campaign: dict[str, Any]
    sections: list[tuple[Section, Any]]


def campaign_load(*, path: str | Path, actor: str, raise_reason: str = "") -> LoadResult:
    """Create or update the venture, segments, campaign and sections a TOML file describes.

    Idempotent: loading the same file twice writes nothing the second time. Raises
    CampaignCodeError ("FILE:LINE: key: problem") with nothing written when any part is wrong.
    A file that raises a running or paused campaign's limits (the admin's rule,
    `ventures.console.limit_raises`) is refused with LimitRaiseNotConfirmedError unless
    `raise_reason` confirms it; the campaign's audit row then keeps that reason, as the admin's
    confirmed raise does.
    """
    label = str(path)
    text = _read_text(Path(path), label)
    data = _parse(text, label)
    loc = Locator(text, label)
    _check_text(data, loc)
    plan = _plan(data, loc)
    reason = load_reason(label)
    raise_reason = raise_reason.strip()[:RAISE_REASON_MAX]
    # Two loads creating the same slug at once: the later insert fails once the first load
    # commits. A second attempt finds the rows and updates them (or finds nothing to do).
    for _attempt in range(2):
        try:
            with transaction.atomic():
                return _apply(plan, loc=loc, actor=actor, reason=reason, raise_reason=raise_reason)
        except IntegrityError as exc:
            refusal = str(exc).strip().splitlines()[0] if str(exc).strip() else "IntegrityError"
    raise CampaignCodeError(
        f"{label}: the database refused the change ({refusal}); nothing was written"
    )


def load_reason(filename: str) -> str:
    """The reason of every audit row a load of `filename` writes."""
    return f"campaign load {Path(filename).name}"


def _read_text(path: Path, label: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CampaignCodeError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise CampaignCodeError(f"{label}: is a directory, not a TOML file") from None
    except OSError as exc:
        raise CampaignCodeError(f"{label}: cannot read the file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CampaignCodeError(
            f"{label}:{line}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x});"
            " save it as UTF-8"
        ) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors add
    if not text.strip():
        raise CampaignCodeError(f"{label}: the file is empty")
    return text


_TOML_POSITION = re.compile(r"^(.*) \(at (?:line (\d+), column (\d+)|end of document)\)$", re.S)


def _parse(text: str, label: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignCodeError(_reword_toml_error(str(exc), text, label)) from None
    if not data:
        raise CampaignCodeError(f"{label}: the file has no keys; it needs [venture] and [campaign]")
    return data


def _check_text(data: dict[str, Any], loc: Locator) -> None:
    """Refuse text PostgreSQL cannot store (a "\\u0000" escape) in any key or value of any
    section, registered ones included, before anything is read into a model."""
    found = data_text_problem(data)
    if found is not None:
        path, problem = found
        raise loc.error(path, f"{problem}, which cannot be stored")


def _reword_toml_error(message: str, text: str, label: str) -> str:
    match = _TOML_POSITION.match(message)
    if match is None:
        return f"{label}: not valid TOML: {message}"
    problem, line, column = match.groups()
    # "Cannot declare ('campaign', 'sender') twice" reads better as a dotted key.
    problem = re.sub(
        r"\(('[^']*'(?:, '[^']*')*),?\)",
        lambda m: ".".join(part.strip("' ") for part in m.group(1).split(",")),
        problem,
    )
    if line is None:
        line, where = str(text.rstrip("\n").count("\n") + 1), "at the end of the file"
    else:
        where = f"at column {column}"
    return f"{label}:{line}: not valid TOML: {problem} {where}"


def _plan(data: dict[str, Any], loc: Locator) -> _Plan:
    sections = registered_sections()
    _check_keys(data, [*CORE_SECTIONS, *(s.key for s in sections)], (), loc)
    for required in ("venture", "campaign"):
        if required not in data:
            raise loc.error((), f"the [{required}] table is missing")
    segments = data.get("segments", [])
    if not isinstance(segments, list) or not all(isinstance(s, dict) for s in segments):
        raise loc.error(("segments",), "segments must be an array of tables: write [[segments]]")
    plan = _Plan(
        venture=read_table(data["venture"], VENTURE_KEYS, Venture, ("venture",), loc),
        segments=[
            read_table(item, SEGMENT_KEYS, IcpSegment, ("segments", i), loc)
            for i, item in enumerate(segments)
        ],
        campaign=read_table(data["campaign"], CAMPAIGN_KEYS, Campaign, ("campaign",), loc),
        sections=[(s, data[s.key]) for s in sections if s.key in data],
    )
    seen: set[str] = set()
    for index, segment in enumerate(plan.segments):
        if segment["slug"] in seen:
            raise loc.error(
                ("segments", index, "slug"), f"segment {segment['slug']!r} is listed twice"
            )
        seen.add(segment["slug"])
    return plan


def _apply(plan: _Plan, *, loc: Locator, actor: str, reason: str, raise_reason: str) -> LoadResult:
    slug = plan.venture["slug"]
    venture = Venture.objects.select_for_update().filter(slug=slug).first()
    owner = Campaign.objects.select_related("venture").filter(slug=plan.campaign["slug"]).first()
    if venture is None and owner is not None and owner.venture.slug == slug:
        # A concurrent load of this file committed the venture and the campaign between the
        # two reads above (each sees what was committed when it ran): it is this venture.
        venture = Venture.objects.select_for_update().get(pk=owner.venture_id)
    _check_campaign_owner(owner, venture, loc)
    upsert = Upserter(loc=loc, actor=actor, reason=reason)
    venture, venture_change = upsert("venture", venture, plan.venture, table=("venture",))
    existing = {s.slug: s for s in IcpSegment.objects.select_for_update().filter(venture=venture)}
    segment_changes = []
    for index, values in enumerate(plan.segments):
        _, change = upsert(
            "segment",
            existing.get(values["slug"]),
            {"venture": venture, **values},
            table=("segments", index),
        )
        segment_changes.append(change)
    campaign, campaign_change = _campaign_upsert(
        plan.campaign, venture, upsert, raise_reason=raise_reason
    )
    load = functools.partial(
        _section_load, campaign=campaign, venture=venture, loc=loc, actor=actor,
        raise_reason=raise_reason,
    )  # fmt: skip
    sections = {section.key: load(section, data) for section, data in plan.sections}
    campaign.refresh_from_db()
    return LoadResult(
        path=loc.filename,
        venture=venture,
        campaign=campaign,
        venture_change=venture_change,
        segment_changes=segment_changes,
        campaign_change=campaign_change,
        sections={k: v for k, v in sections.items() if v},
    )


def _check_campaign_owner(owner: Campaign | None, venture: Venture | None, loc: Locator) -> None:
    """`owner` is the campaign with the file's campaign slug, if any: it must be the venture's."""
    if owner is not None and (venture is None or owner.venture_id != venture.pk):
        raise loc.error(
            ("campaign", "slug"),
            f"campaign {owner.slug!r} already belongs to venture {owner.venture.slug!r}; a file"
            " cannot move a campaign to another venture (choose another campaign slug)",
        )


def _campaign_upsert(
    values: dict[str, Any], venture: Venture, upsert: Upserter, *, raise_reason: str
) -> tuple[Campaign, Change]:
    """Every campaign field but the mode (a raise of its limits confirmed first), then the mode
    through its service (and its rules)."""
    values = dict(values)
    mode = values.pop("mode")
    campaign = Campaign.objects.select_for_update().filter(slug=values["slug"]).first()
    if campaign is not None and set(campaign.send_days) == set(values["send_days"]):
        values["send_days"] = campaign.send_days  # same days in another order: not a change
    fields_upsert = upsert
    if campaign is not None and _confirmed_raise(campaign, values, upsert.loc, raise_reason):
        fields_upsert = dataclasses.replace(upsert, reason=raise_reason)  # the admin's audit
    campaign, change = fields_upsert(
        "campaign",
        campaign,
        {"venture": venture, **values},
        table=("campaign",),
    )
    try:
        switched = campaign_set_mode(
            campaign=campaign, mode=mode, actor=upsert.actor, reason=upsert.reason
        )
    except DomainError as exc:
        raise upsert.loc.error(("campaign", "mode"), str(exc)) from None
    if switched and change.action == "unchanged":
        change.action = "updated"
    if switched and change.action == "updated":
        change.fields.append("mode")
    return campaign, change


def _confirmed_raise(
    campaign: Campaign, values: dict[str, Any], loc: Locator, raise_reason: str
) -> bool:
    """True when the file raises the stored campaign's limits and `raise_reason` confirms it;
    refuse the load (LimitRaiseNotConfirmedError, before anything of the campaign is written)
    when it raises them without one; False when nothing is raised."""
    edited = copy.copy(campaign)
    for attr, value in values.items():
        setattr(edited, attr, value)
    raises = limit_raises(campaign, edited)
    if not raises:
        return False
    if raise_reason:
        return True
    paths = _attr_paths(CAMPAIGN_KEYS, ("campaign",))
    changes = "; ".join(f"{dotted(paths[r.attr])} {r.old_shown} -> {r.new_shown}" for r in raises)
    raise LimitRaiseNotConfirmedError(
        f"{loc.filename}:{loc(paths[raises[0].attr])}: campaign: the file raises the limits of"
        f" campaign {campaign.slug!r}, which is {campaign.get_status_display().lower()}:"
        f" {changes}. Nothing was written: raising a running or paused campaign's limits needs"
        " a confirmation and a reason",
        raises,
        confirm_to=f"to raise the limits of campaign {campaign.slug!r}",
    )


@dataclasses.dataclass
class Upserter:
    """Creates or updates one record from file values: cleaned, saved with only the changed
    fields, and audited; an unchanged record is not written at all. Sections use `record`
    for their own models (`Upserter.for_section(locate=..., actor=...)`)."""

    loc: Locator
    actor: str
    reason: str

    @classmethod
    def for_section(cls, *, locate: Locator, actor: str) -> Upserter:
        return cls(loc=locate, actor=actor, reason=load_reason(locate.filename))

    def __call__(
        self,
        entity: str,
        instance: models.Model | None,
        values: dict[str, Any],
        *,
        table: KeyPath,
    ) -> tuple[Any, Change]:
        model, schema = _ENTITIES[entity]
        return self.record(entity, instance or model(), values, schema=schema, table=table)

    def record(
        self,
        entity: str,
        instance: models.Model,
        values: dict[str, Any],
        *,
        schema: Schema,
        table: KeyPath,
        label: str = "",
        hidden: tuple[str, ...] = (),
        related: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> tuple[Any, Change]:
        """Give `instance` (unsaved for a creation) `values` (model attribute -> value; the
        schema names the file key of each), save and audit it as `ENTITY.create` or
        `ENTITY.update`. `hidden` fields are secrets: audit rows say only that they changed.
        `related` is state the caller writes itself after the save (name -> (before, after),
        e.g. a many-to-many set): it counts as a change and is audited with the fields."""
        paths = _attr_paths(schema, table)
        label = label or values["slug"]
        related = related or {}
        if instance.pk is None:
            for attr, value in values.items():
                setattr(instance, attr, value)
            self._clean(instance, paths, table)
            instance.save()
            after = {**snapshot(instance), **{k: new for k, (_, new) in related.items()}}
            self._audit(f"{entity}.create", instance, None, after, hidden)
            return instance, Change(entity, label, "created")
        before = {**snapshot(instance), **{k: old for k, (old, _) in related.items()}}
        for attr, value in values.items():
            setattr(instance, attr, _same_spelling(getattr(instance, attr), value))
        after = {**snapshot(instance), **{k: new for k, (_, new) in related.items()}}
        changed = [name for name in after if after[name] != before[name]]
        if not changed:
            return instance, Change(entity, label, "unchanged")
        saved = [name for name in changed if name not in related]
        if saved:
            self._clean(instance, paths, table)
            has_updated_at = any(f.name == "updated_at" for f in instance._meta.concrete_fields)
            instance.save(update_fields=saved + (["updated_at"] if has_updated_at else []))
        self._audit(
            f"{entity}.update",
            instance,
            {name: before[name] for name in sorted(changed)},
            {name: after[name] for name in sorted(changed)},
            hidden,
        )
        fields = [
            dotted(paths[name][len(table) :]) if name in paths else name
            for name in changed
            if name in paths or name in related
        ]
        return instance, Change(entity, label, "updated", fields)

    def _audit(self, action, instance, before, after, hidden) -> None:
        for name in hidden:
            if before is not None and before.get(name):
                before[name] = "(not shown)"
            if after.get(name):
                after[name] = "changed"
        audit_record(
            actor=self.actor,
            action=action,
            entity=instance,
            before=before,
            after=after,
            reason=self.reason,
        )

    def _clean(self, instance: models.Model, paths: dict[str, KeyPath], table: KeyPath) -> None:
        """Run the model's validation; report its first problem (in file order) at its line."""
        # Uniqueness is by construction (rows are looked up by their slugs first) and the
        # database enforces it: a concurrent load then fails with IntegrityError and retries.
        try:
            instance.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            # Errors of fields the file does not set (NON_FIELD_ERRORS too) go to the table.
            problems = [
                (paths.get(field, table), " ".join(messages))
                for field, messages in exc.message_dict.items()
            ]
            path, message = min(problems, key=lambda p: self.loc(p[0]))
            raise self.loc.error(path, message) from None


def _same_spelling(current: Any, new: Any) -> Any:
    """Keep the stored text when the file's differs only in line endings: browsers submit the
    admin's text areas with CRLF, and TOML reads every line break as LF; and the stored amount
    when the file's is the same number written with fewer decimals."""
    if isinstance(current, str) and isinstance(new, str) and current.replace("\r\n", "\n") == new:
        return current
    if isinstance(current, Decimal) and isinstance(new, Decimal) and current == new:
        return current  # 0.5 in the file is the 0.5000 stored: not a change
    return new


_ENTITIES: dict[str, tuple[type[models.Model], Schema]] = {
    "venture": (Venture, VENTURE_KEYS),
    "segment": (IcpSegment, SEGMENT_KEYS),
    "campaign": (Campaign, CAMPAIGN_KEYS),
}


def _section_load(
    section: Section,
    data: Any,
    *,
    campaign: Campaign,
    venture: Venture,
    loc: Locator,
    actor: str,
    raise_reason: str,
) -> dict[str, int]:
    confirm = {"raise_reason": raise_reason} if section.confirms_raises else {}
    try:
        counts = section.load(
            data, campaign=campaign, venture=venture, actor=actor, locate=loc, **confirm
        )
    except CampaignCodeError as exc:
        if str(exc).startswith(f"{loc.filename}:"):
            raise
        raise loc.error((section.key,), str(exc)) from None
    except ValidationError as exc:
        raise loc.error((section.key,), " ".join(exc.messages)) from None
    except DomainError as exc:
        raise loc.error((section.key,), str(exc)) from None
    return dict(counts or {})


# --------------------------------------------------------------------------------------------
# Dumping.


def campaign_dump(*, campaign: Campaign) -> str:
    """The TOML file that describes this campaign (and its venture, segments and sections) as
    the database holds it now; loading it back changes nothing."""
    venture = campaign.venture
    document: dict[str, Any] = {
        "venture": dump_table(venture, VENTURE_KEYS),
        "segments": [
            dump_table(segment, SEGMENT_KEYS)
            for segment in venture.segments.order_by("priority", "slug")
        ],
        "campaign": dump_table(campaign, CAMPAIGN_KEYS),
    }
    if not document["segments"]:
        del document["segments"]
    for section in registered_sections():
        value = section.dump(campaign)
        if value is not None:
            document[section.key] = value
    header = (
        f"# Campaign {campaign.slug!r} of venture {venture.slug!r}, from `campaign dump`.\n"
        "# Load it with `manage.py campaign load FILE.toml`; format: docs/CAMPAIGN_TOML.md.\n"
        "# Status, kill switches and the venture's active flag are not part of the file.\n\n"
    )
    return header + tomli_w.dumps(document, multiline_strings=True)


def dump_table(instance: models.Model, schema: Schema) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name, spec in schema.items():
        if isinstance(spec, Key):
            value = _dump_value(spec.kind, getattr(instance, spec.attr))
            if value is not None:  # TOML has no null: a left-out key means "none"
                table[name] = value
        else:
            table[name] = dump_table(instance, spec)
    return table


def _dump_value(kind: str, value: Any) -> Any:
    if kind == "weekdays":
        return [WEEKDAY_NAMES[int(d) - 1] for d in sorted(value)]
    if kind == "time":
        if value.microsecond:
            return value  # a TOML time literal keeps the fraction
        return value.strftime("%H:%M" if value.second == 0 else "%H:%M:%S")
    if kind == "money":
        return Decimal(value)
    if isinstance(value, list):
        return list(value)
    return value
