"""The `[[templates]]` section of the campaign TOML file (`campaign load` / `campaign dump`).

Registered with ventures.campaign_code's section registry in TemplatingConfig.ready(). Each
table is upserted by (scope, slug) through `template_save`, so it is validated (syntax errors
with their line, unknown filters and attributes), audited and versioned exactly like an edit
in the admin. Keys left out take their defaults; templates the file does not name are left
alone. The format is documented in docs/CAMPAIGN_TOML.md.
"""

from __future__ import annotations

import difflib
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db.models import F, Q

from templating.models import MessageTemplate, TemplateChannel
from templating.services import template_save
from ventures.models import Campaign, Venture

SCOPES = ("campaign", "venture")
# file key -> (model field, default)
TEMPLATE_KEYS: dict[str, tuple[str, Any]] = {
    "slug": ("slug", None),
    "name": ("name", None),
    "scope": ("", "campaign"),
    "channel": ("channel", TemplateChannel.EMAIL.value),
    "narrative_angle": ("narrative_angle", ""),
    "variant_label": ("variant_label", ""),
    "active": ("is_active", True),
    "subject": ("subject", ""),
    "body_text": ("body_text", ""),
    "body_html": ("body_html", ""),
}
KEY_OF_FIELD = {field: key for key, (field, _) in TEMPLATE_KEYS.items() if field}


def templates_load(
    data: Any, *, campaign: Campaign, venture: Venture, actor: str, locate: Any
) -> dict[str, int]:
    """Create or update each `[[templates]]` table; raises CampaignCodeError naming the line."""
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise locate.error(
            ("templates",), "templates must be an array of tables: write [[templates]]"
        )
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(data):
        values = _read(item, index, locate)
        key = (values["scope"], values["slug"])
        if key in seen:
            raise locate.error(
                ("templates", index, "slug"),
                f"template {key[1]!r} is listed twice in the {key[0]} scope",
            )
        seen.add(key)
        counts[
            _upsert(values, index, campaign=campaign, venture=venture, actor=actor, locate=locate)
        ] += 1
    return counts


def _read(item: dict, index: int, locate: Any) -> dict[str, Any]:
    for key in item:
        if key not in TEMPLATE_KEYS:
            close = difflib.get_close_matches(key, list(TEMPLATE_KEYS), n=1)
            hint = (
                f"; did you mean {close[0]!r}?" if close else f" (keys: {', '.join(TEMPLATE_KEYS)})"
            )
            raise locate.error(
                ("templates", index, key), f"unknown key {key!r} in [[templates]]{hint}"
            )
    values: dict[str, Any] = {}
    for key, (_, default) in TEMPLATE_KEYS.items():
        path = ("templates", index, key)
        if key not in item and default is None:
            raise locate.error(path, f"{key} is required")
        value = item.get(key, default)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise locate.error(path, f"must be true or false, not {value!r}")
        if not isinstance(default, bool) and not isinstance(value, str):
            raise locate.error(path, f"must be a string, not {type(value).__name__}")
        values[key] = value.replace("\r\n", "\n") if isinstance(value, str) else value
    if values["scope"] not in SCOPES:
        raise locate.error(("templates", index, "scope"), 'must be "campaign" or "venture"')
    try:
        validate_slug(values["slug"])
    except ValidationError:
        raise locate.error(
            ("templates", index, "slug"), "must be letters, digits, - and _ only"
        ) from None
    return values


def _upsert(
    values: dict[str, Any],
    index: int,
    *,
    campaign: Campaign,
    venture: Venture,
    actor: str,
    locate: Any,
) -> str:
    scoped_campaign = campaign if values["scope"] == "campaign" else None
    template = MessageTemplate.objects.filter(
        venture=venture, campaign=scoped_campaign, slug=values["slug"]
    ).first() or MessageTemplate(venture=venture, campaign=scoped_campaign)
    created = template.pk is None
    changed = False
    for key, (field, _) in TEMPLATE_KEYS.items():
        if field and getattr(template, field) != values[key]:
            setattr(template, field, values[key])
            changed = True
    if not created and not changed:
        return "unchanged"
    try:
        template_save(template=template, actor=actor, reason="campaign load")
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        key = KEY_OF_FIELD.get(field, "slug")
        raise locate.error(("templates", index, key), " ".join(messages)) from None
    return "created" if created else "updated"


def templates_dump(campaign: Campaign) -> list[dict[str, Any]] | None:
    """The campaign's templates and its venture's venture-wide ones, every key written."""
    templates = (
        MessageTemplate.objects.filter(venture_id=campaign.venture_id)
        .filter(Q(campaign=campaign) | Q(campaign__isnull=True))
        .order_by(F("campaign_id").asc(nulls_last=True), "slug")
    )
    rows = []
    for template in templates:
        row: dict[str, Any] = {}
        for key, (field, _) in TEMPLATE_KEYS.items():
            row[key] = (
                getattr(template, field)
                if field
                else ("campaign" if template.campaign_id else "venture")
            )
        rows.append(row)
    return rows or None
