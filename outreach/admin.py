"""The outbox in the console: mailboxes, sequences and routing, every outbound message (with
the variant it uses and why), the manual task queue, `unknown` messages to settle, dispatch
runs, the narrative memory's standings, and the campaign page's outbox panel.

Built on `ventures.admin_toolkit`: every list is scoped to the user's ventures; messages,
runs and decisions are records (read-only); the only writes on a message are the operations
(task done or skipped, an unknown message settled), each through `outreach.services`.
A mailbox's connection URL and IMAP URL (they hold passwords) are write-only: the form never
shows them, lists say only whether one is set, and audit rows hold a keyed fingerprint. The
mailbox page shows how its last IMAP poll went (`outreach.imap`), read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.db.models.functions import Lower
from django.db.models.lookups import StartsWith
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from outreach.feedback import reply_record
from outreach.models import (
    AutoPause,
    DispatchRun,
    FeedbackEvent,
    FeedbackKind,
    Mailbox,
    ManualTask,
    MessageState,
    NarrativeStat,
    ObjectionRule,
    OutboundMessage,
    RoutingRule,
    Sentiment,
    Sequence,
    SequenceStep,
    arm_label,
)
from outreach.selectors import (
    campaigns_sent,
    mailbox_auto_pause,
    mailbox_limit_raises,
    mailboxes_with_history,
    narrative_standings,
    rate_text,
    sequences_with_history,
    venture_tz,
)
from outreach.services import (
    mailbox_pause,
    mailbox_resume,
    manual_task_settle,
    unknown_message_settle,
)
from outreach.sla import NO_OWNER, reply_handled, reply_sla_state, waiting_replies
from templating.models import MessageTemplate
from ventures.admin_toolkit import (
    AuditedAdmin,
    CampaignFilter,
    CappedCountPaginator,
    GuardedDeleteAdmin,
    LimitRaiseConfirmMixin,
    Operation,
    OperationsAdmin,
    ReadOnlyMixin,
    ScopedAdmin,
    VentureFilter,
    VentureObjectFilter,
    operation_action,
    register_change_panel,
    scope_to_ventures,
    visible_campaigns,
)
from ventures.console import CampaignLimits, campaign_limits
from ventures.models import Campaign
from ventures.services import audit_record

NEXT_DUE_SHOWN = 5

# --- Mailboxes -----------------------------------------------------------------------------------


MAILBOX_SENDING_HELP = (
    "Whether this mailbox sends. Once it is saved, only the “Pause sending” and “Resume "
    "sending” buttons at the top of its page switch it: each asks for confirmation and is "
    "recorded in the audit trail with who and why, because pausing holds the messages of "
    "every campaign it sends for and resuming lets them send more at once."
)


class MailboxForm(forms.ModelForm):
    connection_url = forms.CharField(
        label="Connection URL",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="smtp://user:password@host:587/?tls=True. Never shown again; leave empty to "
        "keep the current one.",
    )
    clear_connection = forms.BooleanField(
        required=False, help_text="Use the site's EMAIL_URL (or ESP) instead of this mailbox's own."
    )
    imap_url = forms.CharField(
        label="IMAP URL",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="imaps://user:password@imap.example.com:993/INBOX (TLS), or imap://... "
        "(STARTTLS, port 143); the folder after the server, INBOX if none. `feedback poll` "
        "reads replies, bounces and auto-replies from it. Never shown again; leave empty to "
        "keep the current one.",
    )
    clear_imap = forms.BooleanField(required=False, help_text="Stop polling this mailbox.")
    # (form field, campaign-file field, clear box) of each write-only secret URL.
    SECRET_URLS = (
        ("connection_url", "connection_url_env", "clear_connection"),
        ("imap_url", "imap_url_env", "clear_imap"),
    )

    class Meta:
        model = Mailbox
        fields = (
            "venture", "name", "from_name", "from_email", "reply_to", "is_active", "campaigns",
            "daily_limit", "warmup_start_limit", "warmup_daily_increase", "warmup_started_on",
            "min_gap_seconds", "gap_jitter_seconds", "connection_url", "imap_url",
        )  # fmt: skip
        # Shown under the read-only value on a saved mailbox's page too.
        help_texts = {
            "is_active": MAILBOX_SENDING_HELP,
        }

    def clean_connection_url(self) -> str:
        value = self.cleaned_data["connection_url"].strip()
        if value and "://" not in value:
            raise forms.ValidationError("Give a URL such as smtp://user:password@host:587/.")
        return value

    def clean_imap_url(self) -> str:
        from outreach.imap import ImapUrlError, imap_url_parse

        value = self.cleaned_data["imap_url"].strip()
        if value:
            try:
                imap_url_parse(value)
            except ImapUrlError as exc:
                raise forms.ValidationError(f"The IMAP URL {exc}.") from None
        return value

    def save(self, commit: bool = True):
        mailbox = super().save(commit=False)
        for name, env_name, clear in self.SECRET_URLS:
            typed, cleared = self.cleaned_data.get(name), self.cleaned_data.get(clear)
            if cleared or typed:
                # Typed here: no longer the environment variable a campaign file named.
                setattr(mailbox, env_name, "")
            if cleared:
                setattr(mailbox, name, "")
            elif not typed and mailbox.pk:
                stored = Mailbox.objects.filter(pk=mailbox.pk).values_list(name, flat=True).get()
                setattr(mailbox, name, stored)
        if commit:
            mailbox.save()
            self.save_m2m()
        return mailbox


def _mailbox_pause(box: Mailbox, user, reason: str) -> bool:
    return mailbox_pause(mailbox=box, actor=user, reason=reason)


def _mailbox_resume(box: Mailbox, user, reason: str) -> bool:
    return mailbox_resume(mailbox=box, actor=user, reason=reason)


MAILBOX_OPERATIONS = {
    op.name: op
    for op in (
        Operation(
            name="pause",
            label="Pause sending",
            done="Paused {count} {noun}.",
            unchanged="{count} {noun} already paused.",
            permission="operate",
            apply=_mailbox_pause,
            warning="Nothing more is sent from this mailbox, in any campaign, until someone "
            "resumes it; its leads' messages wait meanwhile.",
        ),
        Operation(
            name="resume",
            label="Resume sending",
            done="Resumed {count} {noun}.",
            unchanged="{count} {noun} already sending.",
            permission="operate",
            apply=_mailbox_resume,
            reason_required=True,
            warning="The mailbox sends again from the next tick, for every campaign whose pool "
            "it is in, the messages that waited for it first.",
        ),
    )
}


@admin.register(Mailbox)
class MailboxAdmin(LimitRaiseConfirmMixin, GuardedDeleteAdmin, OperationsAdmin):
    """A save that lets a running or paused campaign send more through a mailbox (a higher
    daily limit, a loosened warm-up, a shorter gap, or the mailbox joining its pool) confirms
    first, old → new, with a reason (as a campaign's). Whether it sends is read-only in the
    form, as a campaign's status is: only "Pause sending" and "Resume sending" change it."""

    form = MailboxForm
    operations = MAILBOX_OPERATIONS
    raise_on_add = True  # a new mailbox may join a running campaign's pool
    raise_unechoed = ("connection_url", "imap_url")  # secrets never go back into a page
    list_display = (
        "__str__",
        "venture",
        "daily_limit",
        "warmup",
        "min_gap_seconds",
        "connection",
        "imap",
        "is_active",
    )
    list_filter = (VentureFilter, "is_active")
    search_fields = ("from_email", "name")
    filter_horizontal = ("campaigns",)
    readonly_fields = ("connection", "imap", "imap_poll", "audit_trail")
    fieldsets = (
        (None, {"fields": ("venture", "name", "from_name", "from_email", "reply_to", "is_active")}),
        ("Campaigns that send from it", {"fields": ("campaigns",)}),
        (
            "Limits",
            {
                "fields": (
                    "daily_limit",
                    ("warmup_start_limit", "warmup_daily_increase", "warmup_started_on"),
                    ("min_gap_seconds", "gap_jitter_seconds"),
                )
            },
        ),
        ("Connection", {"fields": ("connection", "connection_url", "clear_connection")}),
        (
            "Replies and bounces (IMAP)",
            {"fields": ("imap", "imap_poll", "imap_url", "clear_imap")},
        ),
        ("Audit trail", {"fields": ("audit_trail",)}),
    )

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "is_active") if obj is not None else fields

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "campaigns":
            kwargs["queryset"] = visible_campaigns(request)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_related(self, request, form, formsets, change):
        """The pool change is audited too (`mailbox.campaigns`), with a confirmed raise's
        reason when the mailbox joined a running or paused campaign's pool."""
        box = form.instance
        before = sorted(box.campaigns.values_list("slug", flat=True)) if change else []
        super().save_related(request, form, formsets, change)
        after = sorted(box.campaigns.values_list("slug", flat=True))
        if before != after:
            audit_record(actor=request.user, action="mailbox.campaigns", entity=box,
                         before={"campaigns": before}, after={"campaigns": after},
                         reason=getattr(request, "aicmo_audit_reason", ""))  # fmt: skip

    def has_operate_permission(self, request) -> bool:
        return request.user.has_perm("ventures.operate_campaign")

    def applicable_operations(self, obj: Mailbox) -> list[str]:
        return ["pause"] if obj.is_active else ["resume"]

    def confirm_notes(self, request, operation: Operation, objects: list) -> list[str]:
        if operation.name != "resume":
            return []
        return [
            f"The engine paused {box} in campaign {pause.campaign.name}: {pause.reason}. "
            "Resume once the list or the settings are fixed."
            for box in objects
            if (pause := mailbox_auto_pause(box)) is not None
        ]

    def _raises(self, stored: Mailbox | None, form) -> tuple[list[Campaign], list]:
        chosen = form.cleaned_data.get("campaigns") or []
        before = stored if stored is not None else form.instance  # a new one: joining only
        return mailbox_limit_raises(before, form.instance, joining=chosen)

    def limit_raises_of(self, request, stored: Mailbox | None, form) -> list:
        return self._raises(stored, form)[1]

    def raise_context(self, request, stored: Mailbox | None, form) -> dict:
        serving, _ = self._raises(stored, form)
        edited = form.instance
        already = set(stored.campaigns.values_list("pk", flat=True)) if stored else set()
        sends_for = " and ".join(
            f"{c.get_status_display().lower()} campaign {c.name}"
            + ("" if c.pk in already else " (joining its pool)")
            for c in serving
        )
        today = timezone.now().astimezone(venture_tz(edited.venture)).date()

        def allowed(box: Mailbox | None) -> str:
            if box is None:
                return "no such mailbox yet"
            if not box.is_active:
                return "0 sends from it allowed today (paused)"
            return f"{box.effective_daily_limit(today):,} sends from it allowed today"

        return {
            "intro": f"{'Mailbox' if stored else 'New mailbox'} {edited} sends for {sends_for}.",
            "limits_now": allowed(stored),
            "limits_after": allowed(edited),
        }

    def delete_refusals(self, queryset) -> list[str]:
        return [
            f"Mailbox {box} has sent or planned messages and cannot be deleted: their history "
            "names it. Pause it instead (its Pause sending button)."
            for box in mailboxes_with_history(queryset)
        ]

    @admin.display(description="warm-up")
    def warmup(self, obj: Mailbox) -> str:
        if obj.warmup_start_limit is None:
            return "none"
        return f"{obj.warmup_start_limit} + {obj.warmup_daily_increase}/day"

    @admin.display(description="connection")
    def connection(self, obj: Mailbox) -> str:
        return "its own (set, not shown)" if obj.connection_url else "the site's EMAIL_URL / ESP"

    @admin.display(description="IMAP")
    def imap(self, obj: Mailbox) -> str:
        return "polled (URL set, not shown)" if obj.imap_url else "not polled"

    @admin.display(description="last poll")
    def imap_poll(self, obj: Mailbox) -> str:
        from outreach.imap import poll_state

        return poll_state(obj)


# --- Sequences and routing -----------------------------------------------------------------------


class SequenceStepInline(admin.TabularInline):
    model = SequenceStep
    extra = 0
    fields = (
        "position",
        "kind",
        "delay_days",
        "delay_hours",
        "business_days",
        "templates",
        "new_thread",
    )

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "templates":
            from templating.models import MessageTemplate

            kwargs["queryset"] = scope_to_ventures(MessageTemplate.objects.all(), request)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(Sequence)
class SequenceAdmin(GuardedDeleteAdmin):
    venture_lookup = "campaign__venture"
    list_display = ("name", "campaign", "is_default", "step_count", "stop_conditions")
    list_filter = (CampaignFilter, "is_default")
    search_fields = ("name", "slug", "campaign__name")
    list_select_related = ("campaign",)
    inlines = (SequenceStepInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(steps_total=Count("steps"))

    def delete_refusals(self, queryset) -> list[str]:
        return [
            f"Sequence '{sequence.name}' of {sequence.campaign} has enrolled leads and their "
            "messages and cannot be deleted: their history would go with it. Route new leads "
            "to another sequence instead."
            for sequence in sequences_with_history(queryset.order_by())
        ]

    @admin.display(description="steps", ordering="steps_total")
    def step_count(self, obj: Sequence) -> int:
        return obj.steps_total

    @admin.display(description="stops on")
    def stop_conditions(self, obj: Sequence) -> str:
        names = [
            label
            for label, on in (
                ("reply", obj.stop_on_reply),
                ("auto-reply", obj.stop_on_auto_reply),
                ("company reply", obj.stop_on_company_reply),
            )
            if on
        ]
        # Always, whatever the sequence says: the address is suppressed.
        return ", ".join([*names, "bounce", "unsubscribe", "complaint"])


@admin.register(RoutingRule)
class RoutingRuleAdmin(AuditedAdmin):
    venture_lookup = "campaign__venture"
    list_display = ("__str__", "campaign", "priority")
    list_filter = (CampaignFilter,)
    list_select_related = ("campaign", "sequence", "segment")


# --- Filters of the message, task, run and feedback lists ---------------------------------------

RECENT_RUNS = 500  # runs whose workers the run list's worker filter offers
REASONS_OFFERED = 60  # reason codes the message list's filter offers


def recipient_search(queryset, search_term: str):
    """The start of an address, not case-sensitive: `lower(recipient) LIKE 'term%'`, which the
    lower(recipient) pattern indexes serve (migration 0013_lists_search_indexes) on a million
    messages or feedback events."""
    term = search_term.strip().lower()
    if not term:
        return queryset
    return queryset.filter(StartsWith(Lower("recipient"), term))


class MailboxFilter(VentureObjectFilter):
    title = "mailbox"
    parameter_name = "mailbox"
    field = "mailbox_id"
    model = Mailbox
    order = ("venture__name", "from_email")

    def name(self, obj: Mailbox) -> str:
        return obj.from_email


class StepFilter(admin.SimpleListFilter):
    """The sequence step by its position (step 1, 2, ...), across sequences."""

    title = "step"
    parameter_name = "step"

    def lookups(self, request, model_admin):
        steps = scope_to_ventures(
            SequenceStep.objects.all(), request, "sequence__campaign__venture"
        )
        positions = sorted(set(steps.values_list("position", flat=True)))
        return [(str(p), f"Step {p}") for p in positions]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit() or len(value) > 4:
            return queryset.none()
        return queryset.filter(step__position=int(value))


class ReasonCodeFilter(admin.SimpleListFilter):
    """Why a message was blocked, deferred or failed: the codes the user's messages carry
    (their own ventures' only), read from the partial reason-code index."""

    title = "reason"
    parameter_name = "reason_code"

    def lookups(self, request, model_admin):
        rows = scope_to_ventures(OutboundMessage.objects.all(), request, "campaign__venture")
        codes = (
            rows.exclude(reason_code="")
            .order_by("reason_code")
            .values_list("reason_code", flat=True)
            .distinct()[:REASONS_OFFERED]
        )
        return [(code, code.replace("_", " ")) for code in codes]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(reason_code=value[:40])


class SentFilter(admin.DateFieldListFilter):
    """Today, the past 7 days, this month, this year, not sent: ranges the sent_at index
    serves (date_hierarchy would read every row's date to offer its years)."""


class WorkerFilter(admin.SimpleListFilter):
    """The workers of the newest runs (a worker name is its host and process)."""

    title = "worker"
    parameter_name = "worker"

    def lookups(self, request, model_admin):
        runs = model_admin.get_queryset(request).order_by("-started_at", "-id")
        newest = runs.values_list("worker", flat=True)[:RECENT_RUNS]
        return [(w, w) for w in sorted(set(newest))]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(worker=value[:200])


class RunOutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return (
            ("error", "Failed with an error"),
            ("running", "Not finished"),
            ("ok", "Finished without error"),
        )

    def queryset(self, request, queryset):
        value = self.value()
        if value == "error":
            return queryset.exclude(error="")
        if value == "running":
            return queryset.filter(finished_at__isnull=True, error="")
        if value == "ok":
            return queryset.filter(finished_at__isnull=False, error="")
        return queryset


class FeedbackSourceFilter(admin.SimpleListFilter):
    """The sources (ESPs, imap, import, manual) of the user's own ventures' events."""

    title = "source"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        events = model_admin.get_queryset(request)
        sources = events.order_by("source").values_list("source", flat=True).distinct()[:30]
        return [(s, s) for s in sources]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(source=value[:40])


# --- Messages, tasks, runs -----------------------------------------------------------------------


def _task(done: bool):
    def apply(message: OutboundMessage, user, reason: str) -> bool:
        manual_task_settle(message=message, done=done, actor=user, note=reason)
        return True

    return apply


def _reply(sentiment: str):
    def apply(message: OutboundMessage, user, reason: str) -> bool:
        reply_record(message=message, sentiment=sentiment, actor=user, notes=reason)
        return True

    return apply


def _settle_unknown(sent: bool):
    def apply(message: OutboundMessage, user, reason: str) -> bool:
        unknown_message_settle(message=message, sent=sent, actor=user, reason=reason)
        return True

    return apply


MESSAGE_OPERATIONS = {
    op.name: op
    for op in (
        Operation(name="task-done", label="Mark done", permission="operate", apply=_task(True),
                  done="Marked {count} {noun} done.",
                  warning="The step counts as taken; the sequence goes on to its next step. "
                  "Say what you did below (kept with the task)."),
        Operation(name="task-skip", label="Skip", permission="operate", apply=_task(False),
                  done="Skipped {count} {noun}.",
                  warning="The step counts as taken; the sequence goes on to its next step."),
        Operation(name="settle-sent", label="Settle as sent", permission="operate",
                  apply=_settle_unknown(True), done="Settled {count} {noun} as sent.",
                  reason_required=True,
                  warning="Only if you know it arrived (the mail server's log, a reply). The "
                  "sequence goes on."),
        Operation(name="settle-not-sent", label="Settle as not sent", permission="operate",
                  apply=_settle_unknown(False), done="Settled {count} {noun} as not sent.",
                  reason_required=True,
                  warning="It is marked failed and never sent again (at most once)."),
        *(Operation(name=f"reply-{s.value}", label=f"Replied: {s.label.lower()}",
                    permission="operate", apply=_reply(s.value),
                    done=f"Recorded the reply ({s.label.lower()}) to {{count}} {{noun}}.",
                    warning="The lead is marked replied and its sequence stops. Say what they "
                    "wrote or what you noted below (kept with the reply).")
          for s in Sentiment),
    )
}  # fmt: skip


class MessageAdminBase(ReadOnlyMixin, OperationsAdmin):
    venture_lookup = "campaign__venture"
    operations = MESSAGE_OPERATIONS
    paginator = CappedCountPaginator
    list_display = (
        "recipient",
        "campaign",
        "step_label",
        "state",
        "reason_code",
        "due_at",
        "sent_at",
    )
    # What an operator of lemlist or Instantly narrows a message list by: state, campaign,
    # sender mailbox, step, when it went out, and why it did not.
    list_filter = (
        "state",
        CampaignFilter,
        MailboxFilter,
        StepFilter,
        ("sent_at", SentFilter),
        "kind",
        ReasonCodeFilter,
    )
    list_select_related = ("campaign", "step", "mailbox")
    search_fields = ("recipient",)
    search_help_text = "The start of the recipient's address, not case-sensitive."
    sortable_by = ()
    fields = (
        "recipient", "campaign", "step", "kind", "state", "reason_code", "reason", "due_at",
        "attempts", "mailbox", "template_version", "variant_choice", "subject", "body_text",
        "message_id", "esp_message_id", "in_reply_to", "sent_at", "settled_at", "settled_by",
        "run",
    )  # fmt: skip
    readonly_fields = fields
    actions = (
        operation_action(
            "tasks_done", MESSAGE_OPERATIONS["task-done"], "Mark selected tasks done…"
        ),
        operation_action("tasks_skip", MESSAGE_OPERATIONS["task-skip"], "Skip selected tasks…"),
    )

    def get_search_results(self, request, queryset, search_term):
        return recipient_search(queryset, search_term), False

    def has_operate_permission(self, request) -> bool:
        return request.user.has_perm("ventures.operate_campaign")

    def applicable_operations(self, obj: OutboundMessage) -> list[str]:
        if obj.state == MessageState.TASK_OPEN:
            return ["task-done", "task-skip"]
        replies = [f"reply-{s}" for s in Sentiment.values] if obj.message_id else []
        if obj.state == MessageState.UNKNOWN:
            return ["settle-sent", "settle-not-sent", *replies]
        if obj.state == MessageState.SENT:
            return replies
        return []

    @admin.display(description="step")
    def step_label(self, obj: OutboundMessage) -> str:
        return f"#{obj.step.position} {obj.get_kind_display()}"

    @admin.display(description="variant chosen, and why")
    def variant_choice(self, obj: OutboundMessage) -> str:
        return variant_choice_html(obj)


CHOICE_METHODS = {
    "thompson": "Thompson sampling: one draw from each variant's Beta posterior of its "
    "positive-reply rate; the highest draw won.",
    "explore": "Exploration: picked at random (the roll {roll:.3f} fell below the exploration "
    "floor of {exploration:.0%}), so that every variant keeps some traffic.",
    "single": "The step's only variant: no draw needed.",
}


def variant_choice_html(message: OutboundMessage) -> str:
    """The stored choice (`outreach.narrative`) as a table: each variant's figures, posterior
    mean and draw at decision time, the chosen one marked, and the seed to replay it with."""
    choice = message.narrative_choice
    if not choice:
        return (
            "No choice recorded (a manual step, not composed yet, or composed before "
            "narrative memory)."
        )
    arms = choice.get("arms", [])
    names = dict(
        MessageTemplate.objects.filter(pk__in=[a["template"] for a in arms]).values_list(
            "pk", "name"
        )
    )
    rows = format_html_join(
        "", '<tr class="{}"><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
        (("chosen" if a["template"] == choice["chosen"] else "",
          "✓ " if a["template"] == choice["chosen"] else "", arm_label(a["angle"], a["variant"]),
          names.get(a["template"], f"template #{a['template']}"), a.get("sends", "-"),
          a.get("positive", "-"), f"{a['mean']:.2%}" if "mean" in a else "-",
          f"{a['draw']:.4f}" if "draw" in a else "-") for a in arms),
    )  # fmt: skip
    method = CHOICE_METHODS.get(choice.get("method"), choice.get("method", ""))
    seed = (
        format_html(
            " Seed <code>{}</code>, prior Beta({}, {}); the same seed and figures give the same "
            "choice.", choice["seed"], *choice.get("prior", (1, 1)),
        )
        if choice.get("seed") else ""
    )  # fmt: skip
    segment = message.segment.name if message.segment_id else "(no segment)"
    return format_html(
        '<p class="narrative-method">{}{}</p><table class="narrative-choice"><thead><tr>'
        "<th>Variant (angle · label)</th><th>Template</th><th>Sends</th><th>Positive replies</th>"
        "<th>Posterior mean</th><th>Draw</th></tr></thead><tbody>{}</tbody></table><p>{}</p>",
        method.format(roll=choice.get("roll", 0), exploration=choice.get("exploration", 0)),
        seed, rows,
        f"Counted in the segment {segment}." if choice.get("method") == "single"
        else f"Figures of the segment {segment} at decision time.",
    )  # fmt: skip


@admin.register(OutboundMessage)
class OutboundMessageAdmin(MessageAdminBase):
    pass


@admin.register(ManualTask)
class ManualTaskAdmin(MessageAdminBase):
    """The task queue: open tasks first, with the text to use."""

    list_display = ("recipient", "campaign", "step_label", "state", "due_at", "task_text")
    list_filter = (
        "state",
        CampaignFilter,
        StepFilter,
        ("due_at", admin.DateFieldListFilter),
        "kind",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-state", "due_at")

    def changelist_view(self, request, extra_context=None):
        if "state" not in request.GET and "state__exact" not in request.GET:
            query = request.GET.copy()
            query["state__exact"] = MessageState.TASK_OPEN
            request.GET = query
            request.META["QUERY_STRING"] = query.urlencode()
        return super().changelist_view(request, extra_context)

    @admin.display(description="text")
    def task_text(self, obj: OutboundMessage) -> str:
        text = obj.body_text.strip()
        return text[:160] + ("…" if len(text) > 160 else "")


@admin.register(DispatchRun)
class DispatchRunAdmin(ReadOnlyMixin, ScopedAdmin):
    venture_lookup = "campaign__venture"
    with_global_rows = True  # a run over every campaign belongs to no venture
    list_display = ("__str__", "mode", "campaign", "started_at", "finished_at", "counts_text")
    list_filter = (
        WorkerFilter,
        RunOutcomeFilter,
        "mode",
        CampaignFilter,
        ("started_at", admin.DateFieldListFilter),
    )
    list_select_related = ("campaign",)
    search_fields = ("=worker",)
    search_help_text = "A worker's whole name."
    paginator = CappedCountPaginator
    fields = (
        "worker",
        "mode",
        "campaign",
        "started_at",
        "finished_at",
        "counts_text",
        "artifact_dir",
        "error",
    )
    readonly_fields = fields

    @admin.display(description="outcomes")
    def counts_text(self, obj: DispatchRun) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(obj.counts.items())) or "nothing due"


class MatchedFilter(admin.SimpleListFilter):
    title = "matched"
    parameter_name = "matched"

    def lookups(self, request, model_admin):
        return (("yes", "Matched to a message"), ("no", "Unmatched"))

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(message__isnull=self.value() == "no")
        return queryset


class FeedbackCampaignFilter(CampaignFilter):
    field = "message__campaign_id"


class ReplyHandlingFilter(admin.SimpleListFilter):
    """Positive replies by where they stand against their campaign's SLA."""

    title = "reply handling"
    parameter_name = "handling"

    def lookups(self, request, model_admin):
        return (
            ("waiting", "Positive, waiting for an answer"),
            ("overdue", "Positive, past the SLA"),
            ("handled", "Handled"),
        )

    def queryset(self, request, queryset):
        value = self.value()
        if value == "handled":
            return queryset.filter(handled_at__isnull=False)
        if value not in ("waiting", "overdue"):
            return queryset
        waiting = queryset.filter(pk__in=waiting_replies().values("pk"))
        if value == "waiting":
            return waiting
        now = timezone.now()
        overdue = [e.pk for e in waiting.select_related("message__campaign")
                   if reply_sla_state(e, now=now).overdue]  # fmt: skip
        return queryset.filter(pk__in=overdue)


def _handled(event: FeedbackEvent, user, reason: str) -> bool:
    return reply_handled(event=event, actor=user, note=reason)


FEEDBACK_OPERATIONS = {
    "reply-handled": Operation(
        name="reply-handled", label="Mark handled", permission="operate", apply=_handled,
        done="Marked {count} {noun} handled.", unchanged="{count} {noun} had been handled already.",
        warning="The reply's SLA clock stops and it leaves the waiting list; it is not "
        "escalated any more.",
    ),
}  # fmt: skip


@admin.register(FeedbackEvent)
class FeedbackEventAdmin(ReadOnlyMixin, OperationsAdmin):
    """Every feedback event, matched or not. Unmatched ones have no venture: only users who
    see every venture see them (they may name anyone's address). A positive reply shows where
    it stands against its campaign's SLA until an operator marks it handled."""

    venture_lookup = "venture_id"
    operations = FEEDBACK_OPERATIONS
    list_display = ("received_at", "what", "handling", "effect_short", "recipient", "matched")
    list_filter = (
        ReplyHandlingFilter, FeedbackCampaignFilter, "kind", "sentiment", "objection",
        FeedbackSourceFilter, MatchedFilter, ("received_at", admin.DateFieldListFilter),
        "reliable",
    )  # fmt: skip
    list_select_related = ("message__campaign",)
    paginator = CappedCountPaginator
    search_fields = ("recipient",)
    search_help_text = "The start of the address, not case-sensitive."
    sortable_by = ()
    fields = (
        "kind", "source", "event_id", "occurred_at", "received_at", "recipient", "message",
        "lead", "matched_by", "effect", "sentiment", "objection", "reply_text", "handling",
        "handled_at", "handled_by", "escalated_at", "escalated_to", "notes", "reason", "url",
        "reliable", "esp_message_id", "thread_ids", "subject", "text",
    )  # fmt: skip
    readonly_fields = fields
    actions = (
        operation_action(
            "replies_handled",
            FEEDBACK_OPERATIONS["reply-handled"],
            "Mark selected replies handled…",
        ),
    )

    def get_search_results(self, request, queryset, search_term):
        return recipient_search(queryset, search_term), False

    def has_operate_permission(self, request) -> bool:
        return request.user.has_perm("ventures.operate_campaign")

    def applicable_operations(self, obj: FeedbackEvent) -> list[str]:
        waiting = obj.kind == FeedbackKind.REPLIED and obj.handled_at is None
        return ["reply-handled"] if waiting else []

    @admin.display(description="handling")
    def handling(self, obj: FeedbackEvent) -> str:
        """A positive reply against its SLA: handled, waiting (until when), or overdue (and
        whom it was escalated to)."""
        state = reply_sla_state(obj)
        if state.code == "handled":
            return format_html('<span class="sla sla-handled">{}</span>', "handled")
        if state.code == "waiting":
            return format_html(
                '<span class="sla sla-waiting">answer by {}</span>',
                f"{timezone.localtime(state.due_at):%Y-%m-%d %H:%M}",
            )
        if state.code == "overdue":
            late = int((timezone.now() - state.due_at).total_seconds() // 3600)
            if not obj.escalated_at:
                whom = "escalation pending"
            elif obj.escalated_to == NO_OWNER:
                whom = "no owner email to escalate to"
            else:
                whom = f"escalated to {obj.escalated_to}"
            return format_html(
                '<span class="sla sla-overdue">past the SLA by {} h</span> {}', late, whom
            )
        return ""

    @admin.display(description="event")
    def what(self, obj: FeedbackEvent) -> str:
        """The kind, and for a reply how it reads: "Replied · objection: price"."""
        parts = [obj.get_kind_display()]
        if obj.sentiment or obj.objection:
            reading = obj.get_sentiment_display() if obj.sentiment else ""
            if obj.objection:
                reading = f"{reading}: {obj.get_objection_display()}".lstrip(": ")
            parts.append(reading.lower())
        return " · ".join(parts)

    @admin.display(description="effect")
    def effect_short(self, obj: FeedbackEvent) -> str:
        """What it did, first part (the whole on its page)."""
        first, _, rest = obj.effect.partition("; ")
        first = first if len(first) <= 48 else first[:47] + "…"
        return f"{first} (+{rest.count('; ') + 1} more)" if rest else first

    @admin.display(description="matched", boolean=True)
    def matched(self, obj: FeedbackEvent) -> bool:
        return obj.message_id is not None


@admin.register(ObjectionRule)
class ObjectionRuleAdmin(AuditedAdmin):
    """The rules that file replies under objections: refine them as replies come in."""

    venture_lookup = None  # one set of rules for every venture
    list_display = ("priority", "category", "pattern", "is_active", "note")
    list_display_links = ("pattern",)
    list_filter = ("category", "is_active")
    ordering = ("priority", "id")


@admin.register(NarrativeStat)
class NarrativeStatAdmin(ReadOnlyMixin, ScopedAdmin):
    """Narrative memory: above the list, per venture and ICP segment, which narrative is
    winning and how sure that is; the list holds every arm's figures. Figures only move with
    sends and feedback (or `manage.py narrative rebuild`), never by hand."""

    change_list_template = "admin/outreach/narrativestat/change_list.html"
    list_display = (
        "venture", "segment_name", "arm", "sends", "deliveries", "replies", "positive_replies",
        "objections", "rate",
    )  # fmt: skip
    list_filter = (VentureFilter,)
    list_select_related = ("venture", "segment")
    sortable_by = ()

    def changelist_view(self, request, extra_context=None):
        extra_context = {"title": "Narrative memory", **(extra_context or {})}
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context is not None and "cl" in context:
            # The whole filtered list (the venture filter keeps segments whole), not one page.
            context["standings"] = narrative_standings(context["cl"].queryset)
        return response

    @admin.display(description="segment")
    def segment_name(self, obj: NarrativeStat) -> str:
        return obj.segment.name if obj.segment_id else "No segment"

    @admin.display(description="narrative (angle · variant)")
    def arm(self, obj: NarrativeStat) -> str:
        return obj.arm_label

    @admin.display(description="positive rate (95% interval)")
    def rate(self, obj: NarrativeStat) -> str:
        return rate_text(obj.positive_replies, obj.sends)


@admin.register(AutoPause)
class AutoPauseAdmin(ReadOnlyMixin, ScopedAdmin):
    venture_lookup = "campaign__venture"
    list_display = ("paused_at", "campaign", "mailbox", "reason")
    list_filter = (CampaignFilter, MailboxFilter)
    list_select_related = ("campaign", "mailbox")
    fields = ("paused_at", "campaign", "mailbox", "reason", "figures")
    readonly_fields = fields


# --- The campaign page's outbox panel ------------------------------------------------------------


def campaign_outbox_panel(request, campaign: Campaign) -> str:
    """What the outbox is doing for this campaign: messages by state, the next due, why
    messages were blocked, unknown messages to settle, open tasks, and today's cap use."""
    messages = OutboundMessage.objects.filter(campaign=campaign)
    by_state = dict(messages.order_by().values_list("state").annotate(n=Count("id")))
    states = format_html_join(
        "", "<tr><td>{}</td><td>{}</td></tr>",
        ((MessageState(s).label, by_state[s]) for s in MessageState.values if s in by_state),
    )  # fmt: skip
    blocked = (
        messages.filter(state=MessageState.BLOCKED)
        .order_by()
        .values_list("reason_code")
        .annotate(n=Count("id"))
        .order_by("-n")[:8]
    )
    due = messages.filter(state__in=[MessageState.SCHEDULED, MessageState.DEFERRED]).order_by(
        "due_at", "id"
    )[:NEXT_DUE_SHOWN]
    used = campaigns_sent([campaign]).get(campaign.pk, 0)
    limits = campaign_limits(campaign)  # every level, as the console's "effective today"
    changelist = reverse("admin:outreach_outboundmessage_changelist")
    tasks = reverse("admin:outreach_manualtask_changelist")
    return format_html(
        "{}"
        '<table class="outbox-states"><thead><tr><th>State</th><th>Messages</th></tr></thead>'
        "<tbody>{}</tbody></table>"
        "<p>Sent today: <strong>{}</strong>{}.</p>"
        "<p>Next due: {}</p><p>Blocked, by reason: {}</p>"
        '<p><a href="{}?campaign={}&amp;state__exact=unknown">Unknown messages to settle: {}</a>'
        ' · <a href="{}?campaign={}&amp;state__exact=task_open">Open tasks: {}</a></p>{}',
        _auto_pauses(campaign),
        states or format_html("<tr><td colspan=2>{}</td></tr>", "No messages yet."),
        used,
        _allowed_today(limits),
        format_html_join(", ", "{} at {}", ((m.recipient, f"{m.due_at:%Y-%m-%d %H:%M}") for m in due))
        or "nothing",
        format_html_join(", ", "{} ({})", blocked) or "none",
        changelist, campaign.pk, by_state.get(MessageState.UNKNOWN, 0),
        tasks, campaign.pk, by_state.get(MessageState.TASK_OPEN, 0),
        _replies_waiting(campaign),
    )  # fmt: skip


def _allowed_today(limits: CampaignLimits) -> str:
    """After "Sent today: N": the limit the outbox enforces, or that nothing can be sent (in
    a few words: the state badge at the top of the page says why in full)."""
    if limits.held:
        return f"; {limits.held_brief}, as the campaign's state says"
    return (
        f" of {limits.effective:,} allowed today ({limits.binds}; each recipient domain has "
        "its own limit too)"
    )


def _replies_waiting(campaign: Campaign) -> str:
    """Positive replies nobody has marked handled, and how many are past the SLA."""
    waiting = list(
        waiting_replies().filter(message__campaign=campaign).select_related("message__campaign")
    )
    if not waiting:
        return ""
    now = timezone.now()
    overdue = sum(reply_sla_state(e, now=now).overdue for e in waiting)
    events = reverse("admin:outreach_feedbackevent_changelist")
    sla = campaign.reply_sla_hours
    return format_html(
        '<p><a href="{}?handling=waiting&amp;campaign={}">Positive replies waiting for an '
        "answer: {}</a>{}</p>",
        events, campaign.pk, len(waiting),
        format_html(
            ' · <a href="{}?handling=overdue&amp;campaign={}"><span class="sla sla-overdue">{} '
            "past the {} h SLA</span></a>",
            events, campaign.pk, overdue, sla,
        ) if overdue else "",
    )  # fmt: skip


def _auto_pauses(campaign: Campaign) -> str:
    """Why the engine paused this campaign or one of its mailboxes, most recent first (and
    which of its mailboxes are still paused)."""
    pauses = list(campaign.auto_pauses.select_related("mailbox")[:AUTO_PAUSES_SHOWN])
    if not pauses:
        return ""
    paused_boxes = [
        b.from_email for b in Mailbox.objects.filter(campaigns=campaign, is_active=False)
    ]
    rows = format_html_join(
        "", "<li>{} · {}: {}</li>",
        ((f"{p.paused_at:%Y-%m-%d %H:%M} UTC", f"mailbox {p.mailbox.from_email}" if p.mailbox
          else "the campaign", p.reason) for p in pauses),
    )  # fmt: skip
    still = (
        format_html("<p>Mailboxes still paused: {}. Resume one from its page (\"Resume "
                    "sending\") once its list or settings are fixed.</p>", ", ".join(paused_boxes))
        if paused_boxes else ""
    )  # fmt: skip
    return format_html(
        '<div class="auto-pauses"><p><strong>Auto-paused</strong> (resume once the cause is '
        "fixed; only sends after the pause count towards the next one):</p><ul>{}</ul>{}</div>",
        rows, still,
    )  # fmt: skip


AUTO_PAUSES_SHOWN = 5

register_change_panel(Campaign, "Outbox", campaign_outbox_panel)
