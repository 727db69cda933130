"""Extension points that let an app to the right of templating supply recipients.

templating renders plain context dicts and does not know what a lead is (DESIGN.md), yet the
preview and the campaign check need real recipients. outreach, which may import leads, fills
these two hooks in its AppConfig.ready():

- `set_context_schema(schema)`: the variables its context builder provides, so a template
  that names an unknown attribute is refused when it is saved;
- `set_recipient_source(source)`: how to list a campaign's recipients and build their context.

Without a registered source the console offers only an empty sample recipient.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from templating.sandbox import ContextSchema


@dataclass(frozen=True)
class Recipient:
    """One recipient to render for: `ref` is stored in the render log (never a foreign key)."""

    ref: str
    label: str
    context: dict[str, Any]
    seed: str
    unsubscribe_url: str = ""
    is_sample: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class RecipientSource(Protocol):
    def choices(self, *, campaign: Any, limit: int, search: str = "") -> list[tuple[str, str]]:
        """(ref, label) of up to `limit` recipients of the campaign, for a picker; with
        `search`, those whose address starts with it (case-insensitive)."""

    def get(self, *, campaign: Any, ref: str) -> Recipient | None:
        """The recipient `ref` if it belongs to `campaign` (else None: never cross scopes)."""

    def sample(self, *, campaign: Any) -> Recipient:
        """A documented fictitious recipient for previews."""

    def count(self, *, campaign: Any) -> int:
        """How many recipients the campaign has (for the check's "N of M")."""

    def iterate(self, *, campaign: Any, limit: int) -> Iterator[Recipient]:
        """Up to `limit` recipients of the campaign, in a stable documented order."""


class _EmptySource:
    def choices(self, *, campaign: Any, limit: int, search: str = "") -> list[tuple[str, str]]:
        return []

    def get(self, *, campaign: Any, ref: str) -> Recipient | None:
        return None

    def sample(self, *, campaign: Any) -> Recipient:
        return Recipient(ref="sample", label="Sample (no data)", context={}, seed="sample")

    def count(self, *, campaign: Any) -> int:
        return 0

    def iterate(self, *, campaign: Any, limit: int) -> Iterator[Recipient]:
        return iter(())


_registry: dict[str, Any] = {"schema": None, "source": None}


def set_context_schema(schema: ContextSchema) -> None:
    _registry["schema"] = schema


def context_schema() -> ContextSchema | None:
    """The registered schema, or None (then only the language rules are checked at save)."""
    return _registry["schema"]


def set_recipient_source(source: RecipientSource) -> None:
    _registry["source"] = source


def recipient_source() -> RecipientSource:
    return _registry["source"] or _EmptySource()
