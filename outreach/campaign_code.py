"""The outreach sections of the campaign TOML file: `[[mailboxes]]`, `[[sequences]]` with their
`[[sequences.steps]]`, and `[[routing]]` (`campaign load` / `campaign dump`).

Registered with ventures.campaign_code's section registry in OutreachConfig.ready(), after
templating's `[[templates]]`, because steps name templates. The tables are read, saved and
audited with the core's machinery (`read_table`, `Upserter`), so they behave like the core
ones: upserted by identity, a key left out means its default, every creation and changed field
is audited, and an error anywhere rolls the whole file back. The format is documented in
docs/CAMPAIGN_TOML.md.

- **Mailboxes** belong to the venture and are found by their address. The campaign's pool is
  the mailboxes the file lists: one left out leaves the pool and stays in the venture.
- **The connection and IMAP URLs hold passwords.** A file names the environment variable each
  is read from at load time (`connection_url_env`, `imap_url_env`), or keeps what the database
  holds with `connection` / `imap = "custom (not shown)"`; dumps, audit rows and errors never
  show a value.
- **Sequences** are found by slug; those the file does not name are left alone. Within a named
  sequence the file lists all its steps, in order; removing a step that has messages is
  refused, because its messages are the record of what was sent.
- **Routing rules** have no name: `[[routing]]` is the campaign's whole list of rules, and a
  rule left out of it is deleted.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q

from leads.models import Grade, SourceChannel
from outreach.models import Mailbox, RoutingRule, Sequence, SequenceStep, StepKind
from outreach.selectors import mailbox_auto_pause, mailbox_limit_raises
from outreach.services import mailbox_resume
from templating.models import MessageTemplate
from ventures.campaign_code import (
    Key,
    KeyPath,
    LimitRaiseNotConfirmedError,
    Locator,
    Upserter,
    did_you_mean,
    dotted,
    dump_table,
    heading,
    read_table,
)
from ventures.models import Campaign, Venture
from ventures.services import audit_record, snapshot

MAILBOX_KEYS = {
    "email": Key("from_email", "text", required=True),
    "name": Key("name", "text", required=True),
    "from_name": Key("from_name", "text"),
    "reply_to": Key("reply_to", "text"),
    "daily_limit": Key("daily_limit", "count"),
    "warmup_start_limit": Key("warmup_start_limit", "optional_count"),
    "warmup_daily_increase": Key("warmup_daily_increase", "count"),
    "warmup_started_on": Key("warmup_started_on", "date"),
    "min_gap_seconds": Key("min_gap_seconds", "count"),
    "gap_jitter_seconds": Key("gap_jitter_seconds", "count"),
    "active": Key("is_active", "bool"),
}
CUSTOM_CONNECTION = "custom (not shown)"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class SecretUrl:
    """A mailbox URL that holds a password, and the two keys a file sets it with: the name of
    the environment variable it is read from (`env_key`, also the model field that remembers
    it), or `kind_key` = the `unset` word or "custom (not shown)"."""

    field: str
    env_key: str
    kind_key: str
    unset: str
    unset_means: str
    noun: str
    example: str
    example_env: str
    check: Any  # (value) -> None, or raises ValueError / ImproperlyConfigured


def _email_url_check(value: str) -> None:
    environ.Env.email_url_config(value)


def _imap_url_check(value: str) -> None:
    from outreach.imap import imap_url_parse

    imap_url_parse(value)


CONNECTION = SecretUrl(
    field="connection_url", env_key="connection_url_env", kind_key="connection",
    unset="default", unset_means="the site's EMAIL_URL", noun="connection URL",
    example="an e-mail URL {limit} such as smtp://user:password@host:587/?tls=True",
    example_env="NORTHWIND_SMTP_URL", check=_email_url_check,
)  # fmt: skip
IMAP = SecretUrl(
    field="imap_url", env_key="imap_url_env", kind_key="imap", unset="none",
    unset_means="the mailbox's inbox is not polled", noun="IMAP URL",
    example="an IMAP URL {limit} such as imaps://user:password@imap.example.com/INBOX",
    example_env="NORTHWIND_IMAP_URL", check=_imap_url_check,
)  # fmt: skip
SECRET_URLS = (CONNECTION, IMAP)
# How a mailbox connects and where its inbox is; read by `_secret_url`, written last in a dump.
CONNECTION_KEYS = tuple(key for url in SECRET_URLS for key in (url.env_key, url.kind_key))

SEQUENCE_KEYS = {
    "slug": Key("slug", "slug", required=True),
    "name": Key("name", "text", required=True),
    "default": Key("is_default", "bool"),
    "stop_on_reply": Key("stop_on_reply", "bool"),
    "stop_on_auto_reply": Key("stop_on_auto_reply", "bool"),
    "stop_on_company_reply": Key("stop_on_company_reply", "bool"),
}
# Stop conditions that always hold: the address is suppressed, so no sequence can go on.
# Older files name them; `true` is accepted (and not dumped), `false` is refused.
ALWAYS_STOPS = {
    "stop_on_bounce": "a hard bounce",
    "stop_on_unsubscribe": "an unsubscribe",
    "stop_on_complaint": "a spam complaint",
}
STEP_KEYS = {
    "kind": Key("kind", "text"),
    "delay_days": Key("delay_days", "count"),
    "delay_hours": Key("delay_hours", "count"),
    "business_days": Key("business_days", "bool"),
    "new_thread": Key("new_thread", "bool"),
}
# Read by the section itself: the step's variant pool, by template slug.
STEP_EXTRA_KEYS = ("templates",)
ROUTING_KEYS = {
    "sequence": Key("sequence", "slug", required=True),
    "priority": Key("priority", "count"),
    "grades": Key("grades", "strings"),
    "segment": Key("segment", "slug"),
    "source_channels": Key("source_channels", "strings"),
}


def _tables(data: Any, path: KeyPath, locate: Locator) -> list[dict]:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise locate.error(
            path, f"{dotted(path)} must be an array of tables: write {heading((*path, 0))}"
        )
    return data


def _one_of(value: str, allowed: list[str], path: KeyPath, locate: Locator, noun: str) -> str:
    if value not in allowed:
        raise locate.error(
            path,
            f"{value!r} is not a {noun}{did_you_mean(value, allowed)} (use {', '.join(allowed)})",
        )
    return value


def _members(
    values: list[str], allowed: list[str], path: KeyPath, locate: Locator, noun: str
) -> list[str]:
    for index, value in enumerate(values):
        _one_of(value, allowed, (*path, index), locate, noun)
        if value in values[:index]:
            raise locate.error((*path, index), f"{value!r} is listed twice")
    return values


# --------------------------------------------------------------------------------------------
# [[mailboxes]]


def mailboxes_load(
    data: Any,
    *,
    campaign: Campaign,
    venture: Venture,
    actor: str,
    locate: Locator,
    raise_reason: str = "",
) -> dict[str, int]:
    """Create or update each mailbox of the venture; the campaign's pool becomes the list.
    What lets a running or paused campaign (this one included) send more through a mailbox
    (`_confirmed_raise`: its limits raised, its gap shortened, switched back on, or joining
    this campaign's pool) is refused unless `raise_reason` confirms it, and is then audited
    with it; a paused mailbox switched back on goes through `mailbox_resume`, as the admin's
    "Resume sending" does."""
    upsert = Upserter.for_section(locate=locate, actor=actor)
    existing = {
        m.from_email: m for m in Mailbox.objects.select_for_update().filter(venture=venture)
    }
    in_pool = set(campaign.mailboxes.values_list("pk", flat=True))
    counts = dict.fromkeys(("created", "updated", "unchanged", "added", "removed"), 0)
    # Every table is read first: whether a mailbox joining the pool raises its capacity
    # depends on the whole pool the file sets (a swap for an equal mailbox does not).
    plans: list[tuple[KeyPath, Mailbox | None, dict[str, Any]]] = []
    for index, item in enumerate(_tables(data, ("mailboxes",), locate)):
        path = ("mailboxes", index)
        for url in SECRET_URLS:
            if url.field in item:
                raise locate.error(
                    (*path, url.field),
                    f"a{'n' if url.noun[0] in 'aeiouAEIOU' else ''} {url.noun} holds a password "
                    "and never goes into a file: put it in an environment variable and write "
                    f'{url.env_key} = "ITS_NAME"',
                )
        values = read_table(item, MAILBOX_KEYS, Mailbox, path, locate, extra=CONNECTION_KEYS)
        email = values["from_email"]
        if any(listed["from_email"] == email for _, _, listed in plans):
            raise locate.error((*path, "email"), f"mailbox {email!r} is listed twice")
        mailbox = existing.get(email)
        for url in SECRET_URLS:
            values.update(_secret_url(url, item, mailbox, path, locate))
        plans.append((path, mailbox, values))
    pool_after = {
        campaign.pk: [_edited(mailbox or Mailbox(venture=venture), v) for _, mailbox, v in plans]
    }
    pool: list[Mailbox] = []
    pool_saver = upsert  # with the raise's reason once a confirmed mailbox joins the pool
    for path, mailbox, values in plans:
        email = values["from_email"]
        joining = [campaign] if mailbox is None or mailbox.pk not in in_pool else []
        confirmed = _confirmed_raise(
            mailbox or Mailbox(venture=venture),
            values,
            joining,
            path,
            locate,
            raise_reason,
            pool_after=pool_after,
        )
        # Switched back on only through the operator's resume, as the admin's "Resume sending".
        resume = mailbox is not None and values["is_active"] and not mailbox.is_active
        if resume:
            values["is_active"] = False
        # A confirmed raise is audited with its reason, as the admin's is.
        saver = dataclasses.replace(upsert, reason=raise_reason) if confirmed else upsert
        pool_saver = saver if confirmed and joining else pool_saver
        mailbox, change = saver.record(
            "mailbox",
            mailbox or Mailbox(venture=venture),
            values,
            schema=MAILBOX_KEYS,
            table=path,
            label=email,
            hidden=tuple(url.field for url in SECRET_URLS),
        )
        if resume:
            mailbox_resume(mailbox=mailbox, actor=actor, reason=saver.reason)
            change = dataclasses.replace(
                change, action="updated", fields=[*change.fields, "active"]
            )
        pool.append(mailbox)
        joined = change.action == "unchanged" and mailbox.pk not in in_pool
        counts["added" if joined else change.action] += 1
    counts["removed"] = len(in_pool - {box.pk for box in pool})
    _pool_set(campaign, pool, in_pool, pool_saver)
    return counts


def _edited(mailbox: Mailbox, values: dict[str, Any]) -> Mailbox:
    """A copy of `mailbox` with the file's values, never saved."""
    edited = copy.copy(mailbox)
    for attr, value in values.items():
        setattr(edited, attr, value)
    return edited


def _confirmed_raise(
    mailbox: Mailbox,
    values: dict[str, Any],
    joining: list[Campaign],
    path: KeyPath,
    locate: Locator,
    raise_reason: str,
    *,
    pool_after: dict[int, list[Mailbox]],
) -> bool:
    """True when the file lets a running or paused campaign send more through this mailbox
    (`outreach.selectors.mailbox_limit_raises`: higher limits, a shorter gap, switched back
    on, or joining a pool whose capacity then grows, `pool_after` being the pool the file
    sets) and `raise_reason` confirms it; refuse the load (LimitRaiseNotConfirmedError,
    nothing written) when it does so without one; False when nothing is raised."""
    edited = _edited(mailbox, values)
    serving, raises = mailbox_limit_raises(mailbox, edited, joining=joining, pool_after=pool_after)
    if not raises:
        return False
    if raise_reason:
        return True
    paths = {key.attr: (*path, name) for name, key in MAILBOX_KEYS.items()}
    paths["campaigns"] = path  # joining the pool: the table itself
    changes = "; ".join(
        f"{dotted(paths[r.attr])}"
        + (" in the pool: sends allowed today from its mailboxes" if r.attr == "campaigns" else "")
        + f" {r.old_shown} -> {r.new_shown}"
        for r in raises
    )
    sends_for = " and ".join(
        f"{c.get_status_display().lower()} campaign {c.slug!r}" for c in serving
    )
    email = edited.from_email
    does = f"raises the limits of mailbox {email!r}, which sends for {sends_for}"
    needs = "raising the limits of a mailbox a running or paused campaign sends from"
    confirm_to = f"to raise the limits of mailbox {email!r}"
    kinds = {r.attr for r in raises}
    # What the confirmation is for, by name: not a limit's number but the capacity it adds.
    if "is_active" in kinds:
        pause = mailbox_auto_pause(mailbox)
        paused = f", paused by the engine ({pause.reason})," if pause is not None else ""
        does = f"re-activates mailbox {email!r}{paused} which sends for {sends_for}"
        needs = "re-activating a paused mailbox a running or paused campaign sends from"
        confirm_to = (
            f"to re-activate mailbox {email!r}, which raises the sending capacity of {sends_for}"
        )
    elif kinds == {"campaigns"}:
        does = f"adds mailbox {email!r} to the pool of {sends_for}"
        needs = "adding a mailbox to the pool of a running or paused campaign"
        confirm_to = (
            f"to add mailbox {email!r} to the pool, which raises the sending capacity of "
            f"{sends_for}"
        )
    raise LimitRaiseNotConfirmedError(
        f"{locate.filename}:{locate(paths[raises[0].attr])}: mailboxes: the file {does}:"
        f" {changes}. Nothing was written: {needs} needs a confirmation and a reason",
        raises,
        confirm_to=confirm_to,
    )


def _secret_url(
    url: SecretUrl, item: dict, mailbox: Mailbox | None, path: KeyPath, locate: Locator
) -> dict[str, str]:
    """The mailbox's secret URL and the variable it came from, as the file gives them. No
    message here may show a value: a mistyped key could hold the secret itself."""
    name, kind = item.get(url.env_key), item.get(url.kind_key)
    if name is not None and kind is not None:
        raise locate.error((*path, url.kind_key), f"give {url.env_key} or {url.kind_key}, not both")
    if name is not None:
        where = (*path, url.env_key)
        return {url.field: _from_environment(url, name, where, locate), url.env_key: name}
    if kind is None or kind == url.unset:
        return {url.field: "", url.env_key: ""}
    if kind != CUSTOM_CONNECTION:
        raise locate.error(
            (*path, url.kind_key),
            f'must be "{url.unset}" ({url.unset_means}) or "{CUSTOM_CONNECTION}" '
            f"(keep the {url.noun} the database holds); to set one, name the environment "
            f"variable that holds it with {url.env_key}",
        )
    kept = getattr(mailbox, url.field) if mailbox is not None else ""
    if not kept:
        raise locate.error(
            (*path, url.kind_key),
            f'"{CUSTOM_CONNECTION}" keeps the {url.noun} the database holds, but this '
            f"mailbox has none: name the environment variable that holds it with "
            f'{url.env_key}, or write {url.kind_key} = "{url.unset}"',
        )
    return {url.field: kept, url.env_key: ""}


def _from_environment(url: SecretUrl, name: Any, path: KeyPath, locate: Locator) -> str:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise locate.error(
            path,
            "must be the name of an environment variable (letters, digits and _, such as "
            f"{url.example_env}) that holds the {url.noun}; the URL itself never goes "
            "into a file",
        )
    value = os.environ.get(name, "")
    if not value:
        raise locate.error(
            path, f"the environment variable {name} is not set; set it to the {url.noun}"
        )
    limit = Mailbox._meta.get_field(url.field).max_length
    try:
        if len(value) > limit:
            raise ValueError
        url.check(value)
    except (ImproperlyConfigured, ValueError, TypeError):
        example = url.example.format(limit=f"of at most {limit} characters")
        raise locate.error(
            path,
            f"the environment variable {name} does not hold {example} (its value is not shown)",
        ) from None
    return value


def _pool_set(campaign: Campaign, pool: list[Mailbox], in_pool: set[int], upsert: Upserter) -> None:
    if {box.pk for box in pool} == in_pool:
        return
    before = sorted(Mailbox.objects.filter(pk__in=in_pool).values_list("from_email", flat=True))
    campaign.mailboxes.set(pool)
    audit_record(
        actor=upsert.actor,
        action="campaign.mailboxes",
        entity=campaign,
        before={"mailboxes": before},
        after={"mailboxes": sorted(box.from_email for box in pool)},
        reason=upsert.reason,
    )


def mailboxes_dump(campaign: Campaign) -> list[dict[str, Any]] | None:
    """The campaign's pool, every key written; the connection and IMAP URLs by their
    variables' names or as a placeholder, never their values."""
    rows = []
    for box in campaign.mailboxes.order_by("from_email"):
        row = dump_table(box, MAILBOX_KEYS)
        for url in SECRET_URLS:
            if getattr(box, url.env_key):
                row[url.env_key] = getattr(box, url.env_key)
            else:
                row[url.kind_key] = CUSTOM_CONNECTION if getattr(box, url.field) else url.unset
        rows.append(row)
    return rows or None


# --------------------------------------------------------------------------------------------
# [[sequences]] and [[sequences.steps]]


@dataclasses.dataclass
class _SequencePlan:
    """One `[[sequences]]` table, read and checked: its values and each step's values and
    template pool."""

    index: int
    values: dict[str, Any]
    steps: list[tuple[dict[str, Any], list[MessageTemplate]]]

    @property
    def slug(self) -> str:
        return self.values["slug"]


def sequences_load(
    data: Any, *, campaign: Campaign, venture: Venture, actor: str, locate: Locator
) -> dict[str, int]:
    """Create or update each sequence and its steps; the file's default sequence becomes the
    campaign's one."""
    templates = _campaign_templates(campaign)
    plans = [
        _sequence_plan(item, index, templates, locate)
        for index, item in enumerate(_tables(data, ("sequences",), locate))
    ]
    for plan in plans:
        if any(other.slug == plan.slug for other in plans[: plan.index]):
            raise locate.error(
                ("sequences", plan.index, "slug"), f"sequence {plan.slug!r} is listed twice"
            )
    counts = dict.fromkeys(("created", "updated", "unchanged"), 0)
    if not plans:
        return counts
    default = _the_default(plans, locate)
    upsert = Upserter.for_section(locate=locate, actor=actor)
    existing = {s.slug: s for s in Sequence.objects.select_for_update().filter(campaign=campaign)}
    planned = {plan.slug for plan in plans}
    # One default per campaign (a unique constraint): the old one gives it up first, even
    # when the file does not name it.
    for sequence in existing.values():
        if sequence.is_default and sequence.slug != default.slug and sequence.slug not in planned:
            upsert.record(
                "sequence",
                sequence,
                {"is_default": False},
                schema=SEQUENCE_KEYS,
                table=("sequences",),
                label=sequence.slug,
            )
            counts["updated"] += 1
    for plan in sorted(plans, key=lambda p: p is default):
        sequence = existing.get(plan.slug) or Sequence(campaign=campaign)
        sequence, change = upsert.record(
            "sequence", sequence, plan.values, schema=SEQUENCE_KEYS, table=("sequences", plan.index)
        )
        steps_changed = _steps_apply(sequence, plan, upsert)
        counts["updated" if steps_changed and change.action == "unchanged" else change.action] += 1
    return counts


def _campaign_templates(campaign: Campaign) -> dict[str, MessageTemplate]:
    """Templates a step may name, by slug: the campaign's own and its venture's venture-wide
    ones; the campaign's own wins when both have a slug."""
    templates = MessageTemplate.objects.filter(venture_id=campaign.venture_id).filter(
        Q(campaign=campaign) | Q(campaign__isnull=True)
    )
    return {t.slug: t for t in sorted(templates, key=lambda t: t.campaign_id is not None)}


def _sequence_plan(
    item: dict, index: int, templates: dict[str, MessageTemplate], locate: Locator
) -> _SequencePlan:
    path = ("sequences", index)
    for key, event in ALWAYS_STOPS.items():
        if key in item and item[key] is not True:
            raise locate.error(
                (*path, key),
                f"{event} always stops the sequence (the address is suppressed in the venture); "
                f"remove {key}",
            )
    values = read_table(item, SEQUENCE_KEYS, Sequence, path, locate, extra=("steps", *ALWAYS_STOPS))
    steps = _tables(item.get("steps", []), (*path, "steps"), locate)
    if not steps:
        raise locate.error(
            (*path, "steps"), "a sequence needs at least one step: add [[sequences.steps]]"
        )
    return _SequencePlan(
        index=index,
        values=values,
        steps=[
            _step_plan(step, (*path, "steps", number), templates, locate)
            for number, step in enumerate(steps)
        ],
    )


def _step_plan(
    item: dict, path: KeyPath, templates: dict[str, MessageTemplate], locate: Locator
) -> tuple[dict[str, Any], list[MessageTemplate]]:
    values = read_table(item, STEP_KEYS, SequenceStep, path, locate, extra=STEP_EXTRA_KEYS)
    _one_of(values["kind"], list(StepKind.values), (*path, "kind"), locate, "step kind")
    where = (*path, "templates")
    if "templates" not in item:
        raise locate.error(where, "required key is missing: the step's templates (its variants)")
    slugs = item["templates"]
    if not isinstance(slugs, list) or not all(isinstance(slug, str) for slug in slugs) or not slugs:
        raise locate.error(
            where,
            'name the step\'s templates by slug, e.g. templates = ["opener-a", "opener-b"]; '
            "a manual step's template is the text of its task",
        )
    for number, slug in enumerate(slugs):
        if slug not in templates:
            hint = did_you_mean(slug, list(templates))
            raise locate.error((*where, number), f"no template {slug!r} in this campaign{hint}")
        if slug in slugs[:number]:
            raise locate.error((*where, number), f"template {slug!r} is listed twice")
    return values, [templates[slug] for slug in slugs]


def _the_default(plans: list[_SequencePlan], locate: Locator) -> _SequencePlan:
    defaults = [plan for plan in plans if plan.values["is_default"]]
    if not defaults:
        raise locate.error(
            ("sequences",),
            "mark one sequence default = true: leads that no routing rule matches go to it",
        )
    if len(defaults) > 1:
        raise locate.error(
            ("sequences", defaults[1].index, "default"),
            f"sequence {defaults[0].slug!r} is the default already; only one sequence may be "
            "default = true",
        )
    return defaults[0]


def _steps_apply(sequence: Sequence, plan: _SequencePlan, upsert: Upserter) -> bool:
    """The sequence's steps become the file's, in order; True if anything changed. Steps are
    matched by order, so their position numbers stay as they are."""
    current = list(sequence.steps.prefetch_related("templates").order_by("position"))
    last = current[-1].position if current else 0
    changed = False
    for number, (values, pool) in enumerate(plan.steps):
        if number < len(current):
            step = current[number]
            before = sorted(t.slug for t in step.templates.all())
        else:
            last += 1
            step, before = SequenceStep(sequence=sequence, position=last), []
        after = sorted(t.slug for t in pool)
        step, change = upsert.record(
            "step",
            step,
            values,
            schema=STEP_KEYS,
            table=("sequences", plan.index, "steps", number),
            label=f"{sequence.slug}#{step.position}",
            related={"templates": (before, after)},
        )
        if before != after:
            step.templates.set(pool)
        changed = changed or change.action != "unchanged"
    for step in current[len(plan.steps) :]:
        _step_remove(step, ("sequences", plan.index, "steps"), upsert)
        changed = True
    return changed


def _step_remove(step: SequenceStep, path: KeyPath, upsert: Upserter) -> None:
    # Locked first: a tick planning a message for this step waits, then finds it gone.
    SequenceStep.objects.select_for_update().filter(pk=step.pk).first()
    messages = step.messages.count()
    if messages:
        raise upsert.loc.error(
            path,
            f"step {step.position} ({step.get_kind_display()}) of sequence "
            f"{step.sequence.slug!r} cannot be removed: it has {messages} outbound message(s), "
            "kept as the record of what was sent. Keep the step in the file; to send leads "
            "another way, add a new sequence and route them to it",
        )
    audit_record(
        actor=upsert.actor,
        action="step.delete",
        entity=step,
        before={**snapshot(step), "templates": sorted(t.slug for t in step.templates.all())},
        reason=upsert.reason,
    )
    step.delete()


def sequences_dump(campaign: Campaign) -> list[dict[str, Any]] | None:
    """The campaign's sequences, the default first, each with its steps in order."""
    sequences = campaign.sequences.order_by("-is_default", "slug").prefetch_related(
        "steps__templates"
    )
    rows = []
    for sequence in sequences:
        row = dump_table(sequence, SEQUENCE_KEYS)
        row["steps"] = [
            {
                **dump_table(step, STEP_KEYS),
                "templates": sorted(t.slug for t in step.templates.all()),
            }
            for step in sorted(sequence.steps.all(), key=lambda s: s.position)
        ]
        rows.append(row)
    return rows or None


# --------------------------------------------------------------------------------------------
# [[routing]]


def routing_load(
    data: Any, *, campaign: Campaign, venture: Venture, actor: str, locate: Locator
) -> dict[str, int]:
    """The campaign's routing rules become the file's list; rules not in it are deleted."""
    sequences = {s.slug: s for s in Sequence.objects.filter(campaign=campaign)}
    segments = {s.slug: s for s in venture.segments.all()}
    wanted = [
        _rule_values(item, ("routing", index), sequences, segments, locate)
        for index, item in enumerate(_tables(data, ("routing",), locate))
    ]
    spare = list(
        RoutingRule.objects.select_for_update().filter(campaign=campaign).order_by("priority", "id")
    )
    # Rules have no name. A rule of the file that an existing one equals is that rule; the
    # others take the places of the remaining ones in order; rules left over are deleted.
    same: dict[int, RoutingRule] = {}
    for index, values in enumerate(wanted):
        match = next((rule for rule in spare if _rule_is(rule, values)), None)
        if match is not None:
            spare.remove(match)
            same[index] = match
    upsert = Upserter.for_section(locate=locate, actor=actor)
    counts = dict.fromkeys(("created", "updated", "unchanged", "removed"), 0)
    for index, values in enumerate(wanted):
        rule = same.get(index) or (spare.pop(0) if spare else RoutingRule(campaign=campaign))
        _, change = upsert.record(
            "routing",
            rule,
            values,
            schema=ROUTING_KEYS,
            table=("routing", index),
            label=f"rule {index}",
        )
        counts[change.action] += 1
    for rule in spare:
        audit_record(
            actor=upsert.actor,
            action="routing.delete",
            entity=rule,
            before=snapshot(rule),
            reason=upsert.reason,
        )
        rule.delete()
        counts["removed"] += 1
    return counts


def _rule_values(
    item: dict,
    path: KeyPath,
    sequences: dict[str, Sequence],
    segments: dict[str, Any],
    locate: Locator,
) -> dict[str, Any]:
    values = read_table(item, ROUTING_KEYS, RoutingRule, path, locate)
    slug = values["sequence"]
    if slug not in sequences:
        hint = did_you_mean(slug, list(sequences))
        raise locate.error((*path, "sequence"), f"no sequence {slug!r} in this campaign{hint}")
    values["sequence"] = sequences[slug]
    if values["segment"] is not None:
        slug = values["segment"]
        if slug not in segments:
            hint = did_you_mean(slug, list(segments))
            raise locate.error((*path, "segment"), f"no segment {slug!r} in this venture{hint}")
        values["segment"] = segments[slug]
    values["grades"] = [grade.upper() for grade in values["grades"]]
    _members(values["grades"], list(Grade.values), (*path, "grades"), locate, "grade")
    channels = list(SourceChannel.values)
    _members(values["source_channels"], channels, (*path, "source_channels"), locate, "channel")
    return values


def _rule_is(rule: RoutingRule, values: dict[str, Any]) -> bool:
    return snapshot(RoutingRule(pk=rule.pk, campaign_id=rule.campaign_id, **values)) == snapshot(
        rule
    )


def routing_dump(campaign: Campaign) -> list[dict[str, Any]] | None:
    """The campaign's rules in the order they are tried."""
    rules = (
        RoutingRule.objects.filter(campaign=campaign)
        .select_related("sequence", "segment")
        .order_by("priority", "id")
    )
    rows = []
    for rule in rules:
        row = dump_table(rule, ROUTING_KEYS)
        row["sequence"] = rule.sequence.slug
        if rule.segment is not None:
            row["segment"] = rule.segment.slug
        rows.append(row)
    return rows or None
