"""Narrative memory: what each narrative did in each venture and ICP segment, and which variant
the next email uses.

**The figures.** An arm is a venture, an ICP segment (or none), a narrative angle and a variant
label: the angle and label of the template version an email was rendered from, and the
segment its lead was in when it was composed (`OutboundMessage.segment`, so a lead moving to
another segment later takes none of its history along). `NarrativeStat` counts, per arm,
messages, never events, so a repeated report or a second reply changes nothing:

- sends: emails sent (the tick's hand-over, or an `unknown` one settled as sent);
- deliveries: sent emails with at least one delivery report;
- replies: sent emails with at least one reply (auto-replies are not replies);
- positive replies and objections: sent emails whose reading, the latest reply that carries a
  sentiment or an objection (the classifier's or an operator's), is positive, or is filed
  under an objection. An operator who reads a reply again replaces the earlier reading: the
  email moves from one count to the other and never counts twice.

The counters move by atomic increments (`UPDATE ... SET n = n + k`, on rows locked in id order
so that two workers never deadlock on them) in the transaction that records the sends or
stores the events. The feedback side also locks the emails it counts (`FOR NO KEY UPDATE`),
so two readings of one email stored at the same moment are applied one after the other, each
seeing the other. `narrative_rebuild` computes the same figures from the messages and events
(after an upgrade, or to check them) under a table lock that makes increments wait for it.

**The model.** Each arm's positive-reply rate has a Beta(1, 1) prior: uniform, no opinion
before the first send, so a new variant is neither favoured nor written off. After s sends and
p positive replies the posterior is Beta(1 + p, 1 + s - p), with mean (1 + p) / (2 + s).

**Selection.** An email step's pool (its active templates) is a set of arms; templates with
the same angle and variant share their figures. With probability AICMO_NARRATIVE_EXPLORATION
(default 0.1), the exploration floor, the variant is drawn uniformly from the pool: each of k
variants keeps at least floor / k of the traffic whatever the figures say, so one that began
badly can recover and a market that changes is noticed. Otherwise Thompson sampling: one draw
from each arm's posterior, and the highest draw wins, so each variant is sent with the
probability that it is the best given what is known; the better one is, the more it gets. A
pool of one needs no draw and no figures. Figures are read once per batch
(`NarrativeBoard.load`, only when some pool has a choice); a batch's own sends count from the
next batch on.

**The seed.** The draws of one message come from Python's `random.Random` seeded with the first
8 bytes of the SHA-256 of "AICMO_NARRATIVE_SEED:<the message's idempotency key>". The same seed,
key and figures give the same choice, so a test or an audit can replay it (`choice_replay`, on
the same Python version: the stream of `betavariate` is the standard library's). Each message
stores its choice in `narrative_choice`: the method (thompson, explore or single), the seed,
the exploration share and its roll, the prior, and per arm its template, angle, variant,
sends, positive replies, posterior mean and draw.

**The console** ranks the arms of each venture and segment: the rate with its 95% Wilson
interval (`rate_interval`) and the probability that each arm is the best (`probability_best`,
Monte Carlo from the posteriors with a fixed seed), worded by `how_sure`.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.utils import timezone

from outreach.models import (
    FeedbackEvent,
    FeedbackKind,
    MessageState,
    NarrativeStat,
    OutboundMessage,
    Sentiment,
    StepKind,
)
from ventures.models import Venture
from ventures.sql import rows_insert, rows_update

PRIOR = (1, 1)  # Beta(alpha, beta) of every arm before its first send
COUNTERS = ("sends", "deliveries", "replies", "positive_replies", "objections")
# What an arm is: venture id, segment id (None: no segment), narrative angle, variant label.
ArmKey = tuple[int, int | None, str, str]
# The events that move a sent email's figures.
COUNTED_EVENTS = (FeedbackKind.DELIVERED, FeedbackKind.REPLIED)
PROBABILITY_DRAWS = 4_000

# --- The model and the choice --------------------------------------------------------------------


def beta_posterior(sends: int, positives: int) -> tuple[int, int]:
    """The Beta posterior (alpha, beta) of a positive-reply rate after `sends` sends with
    `positives` positive replies (figures out of range are clipped, never an error)."""
    sends = max(sends, 0)
    positives = min(max(positives, 0), sends)
    return PRIOR[0] + positives, PRIOR[1] + sends - positives


def posterior_mean(sends: int, positives: int) -> float:
    alpha, beta = beta_posterior(sends, positives)
    return alpha / (alpha + beta)


@dataclass(frozen=True)
class Arm:
    """A variant of a pool as the choice sees it: its template and its arm's figures."""

    template_id: int
    angle: str
    variant: str
    sends: int = 0
    positives: int = 0


def _rng(seed: str) -> random.Random:
    digest = hashlib.sha256(seed.encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - reproducible, not secret


def variant_choose(arms: Sequence[Arm], *, seed: str, exploration: float) -> dict:
    """Choose one of `arms` (a pool's variants): the choice and its reasons, as a message
    stores them (`chosen` is the template id). Pure: the same arms, seed and exploration
    share always give the same result (see the module's docstring)."""
    if len(arms) == 1:  # nothing to weigh: no figures read, no draw
        only = arms[0]
        shown = [{"template": only.template_id, "angle": only.angle, "variant": only.variant}]
        return {"method": "single", "chosen": only.template_id, "arms": shown}
    shown = [
        {"template": a.template_id, "angle": a.angle, "variant": a.variant, "sends": a.sends,
         "positive": a.positives, "mean": round(posterior_mean(a.sends, a.positives), 6)}
        for a in arms
    ]  # fmt: skip
    rng = _rng(seed)
    roll = rng.random()
    draws = [rng.betavariate(*beta_posterior(a.sends, a.positives)) for a in arms]
    if roll < exploration:
        index, method = rng.randrange(len(arms)), "explore"
    else:
        index, method = max(range(len(arms)), key=draws.__getitem__), "thompson"
    for arm, draw in zip(shown, draws, strict=True):
        arm["draw"] = round(draw, 6)
    return {
        "method": method,
        "chosen": arms[index].template_id,
        "seed": seed,
        "exploration": exploration,
        "roll": round(roll, 6),
        "prior": list(PRIOR),
        "arms": shown,
    }


def choice_replay(choice: dict) -> dict:
    """The choice made again from what a message stored (the figures at decision time, the
    seed and the exploration share): equal to it, unless the way of choosing changed."""
    arms = [
        Arm(a["template"], a["angle"], a["variant"], a.get("sends", 0), a.get("positive", 0))
        for a in choice["arms"]
    ]
    return variant_choose(
        arms, seed=choice.get("seed", ""), exploration=choice.get("exploration", 0)
    )


def choice_seed(idempotency_key: str) -> str:
    return f"{settings.AICMO_NARRATIVE_SEED}:{idempotency_key}"


def variant_pool(step) -> list:
    """The variants an email of `step` chooses from: its active templates in id order (all of
    them when none is active), read from the step's prefetched templates."""
    pool = sorted(step.templates.all(), key=lambda t: t.pk)
    return [t for t in pool if t.is_active] or pool


class NarrativeBoard:
    """The figures of a batch's arms, read once for the batch, and each email's choice."""

    def __init__(self, figures: dict[ArmKey, tuple[int, int]]) -> None:
        self.figures = figures  # arm -> (sends, positive replies)
        self.exploration = settings.AICMO_NARRATIVE_EXPLORATION

    @classmethod
    def load(cls, messages: Iterable[OutboundMessage], pools: dict[int, list]) -> NarrativeBoard:
        """One query: the arms of the ventures of the batch's emails that have a choice to make
        (none when every pool, step id -> `variant_pool`, holds one template)."""
        ventures = {
            m.venture_id for m in messages if not m.step.is_manual and len(pools[m.step_id]) > 1
        }
        if not ventures:
            return cls({})
        rows = NarrativeStat.objects.filter(venture_id__in=ventures).values_list(
            "venture_id", "segment_id", "narrative_angle", "variant_label", "sends",
            "positive_replies",
        )  # fmt: skip
        return cls({row[:4]: row[4:] for row in rows})

    def pick(self, message: OutboundMessage, pool: Sequence) -> tuple[object, dict]:
        """The template of `pool` (templates in a stable order) that `message` uses, and why."""
        segment_id = message.lead.segment_id
        arms = []
        for t in pool:
            key = (message.venture_id, segment_id, t.narrative_angle, t.variant_label)
            arms.append(
                Arm(t.pk, t.narrative_angle, t.variant_label, *self.figures.get(key, (0, 0)))
            )
        choice = variant_choose(
            arms, seed=choice_seed(message.idempotency_key), exploration=self.exploration
        )
        choice["segment"] = segment_id
        return next(t for t in pool if t.pk == choice["chosen"]), choice


# --- Counting ------------------------------------------------------------------------------------


def message_arm(message: OutboundMessage) -> ArmKey | None:
    """The arm a sent email counts in (None: not an email rendered from a template)."""
    version = message.template_version
    if message.kind != StepKind.EMAIL or version is None:
        return None
    return (message.venture_id, message.segment_id, version.narrative_angle, version.variant_label)


def narrative_sends_record(*, messages: Iterable[OutboundMessage]) -> None:
    """Emails just marked sent count in their arms: call in the transaction that marks them
    (their template versions loaded). A fixed number of statements, whatever the count."""
    deltas: dict[ArmKey, list[int]] = defaultdict(lambda: [0] * len(COUNTERS))
    for m in messages:
        key = message_arm(m)
        if key is not None:
            deltas[key][0] += 1
    stats_add(deltas)


def narrative_feedback_record(*, events: Sequence[FeedbackEvent]) -> None:
    """Stored events count in their emails' arms. Call once, in the transaction that stored
    them, with every event it stored (events already counted must not be passed again). A
    fixed number of statements, whatever the number of events: none when no event is a
    delivery or a reply to a sent email."""
    new = {e.pk for e in events if e.message_id is not None and e.kind in COUNTED_EVENTS}
    if not new:
        return
    message_ids = sorted({e.message_id for e in events if e.pk in new})
    # Locked in id order until commit: an event of the same email stored meanwhile by another
    # transaction is counted after this one, seeing it (and this one waits for an earlier one).
    locked = (
        OutboundMessage.objects.filter(
            pk__in=message_ids,
            state=MessageState.SENT,
            kind=StepKind.EMAIL,
            template_version__isnull=False,
        )
        .order_by("pk")
        .select_for_update(no_key=True, of=("self",))
        .values_list(
            "pk", "venture_id", "segment_id", "template_version__narrative_angle",
            "template_version__variant_label",
        )
    )  # fmt: skip
    arms = {row[0]: row[1:] for row in locked}
    if not arms:
        return
    history: dict[int, list[tuple]] = defaultdict(list)
    rows = (
        FeedbackEvent.objects.filter(message_id__in=list(arms), kind__in=COUNTED_EVENTS)
        .order_by("pk")
        .values_list("pk", "message_id", "kind", "sentiment", "objection")
    )
    for row in rows:
        history[row[1]].append(row)
    deltas: dict[ArmKey, list[int]] = defaultdict(lambda: [0] * len(COUNTERS))
    for message_id, events_of in history.items():
        before = message_figures([e for e in events_of if e[0] not in new])
        after = message_figures(events_of)
        delta = deltas[arms[message_id]]
        for i, (was, now) in enumerate(zip(before, after, strict=True), start=1):
            delta[i] += now - was
    stats_add(deltas)


def message_figures(events: Sequence[tuple]) -> tuple[int, int, int, int]:
    """(delivered, replied, positive, objection), each 0 or 1, of one sent email from its
    delivery and reply events (id, message, kind, sentiment, objection) in id order."""
    delivered = any(e[2] == FeedbackKind.DELIVERED for e in events)
    replies = [e for e in events if e[2] == FeedbackKind.REPLIED]
    readings = [e for e in replies if e[3] or e[4]]
    reading = readings[-1] if readings else None
    positive = reading is not None and reading[3] == Sentiment.POSITIVE
    objection = reading is not None and bool(reading[4])
    return int(delivered), int(bool(replies)), int(positive), int(objection)


def _arm_order(key: ArmKey) -> tuple:
    venture_id, segment_id, angle, variant = key
    return venture_id, segment_id is not None, segment_id or 0, angle, variant


def stats_add(deltas: dict[ArmKey, Sequence[int]]) -> None:
    """Add `deltas` (per arm, one number per counter) to the arms' counters, atomically: the
    missing rows made (in one order for every worker: two making the same rows cannot
    deadlock), the rows locked in id order, then one UPDATE ... SET n = n + k. Three
    statements, whatever the number of arms. A counter never goes below 0 (it could only
    after figures counted before narrative memory existed: `narrative_rebuild` sets them)."""
    keys = sorted((k for k, d in deltas.items() if any(d)), key=_arm_order)
    if not keys:
        return
    rows_insert(
        NarrativeStat, keys, fields=["venture", "segment", "narrative_angle", "variant_label"]
    )
    wanted = Q()
    for venture_id, segment_id, angle, variant in keys:
        wanted |= Q(
            venture_id=venture_id, segment_id=segment_id, narrative_angle=angle,
            variant_label=variant,
        )  # fmt: skip
    ids = {
        row[1:]: row[0]
        for row in NarrativeStat.objects.filter(wanted)
        .order_by("pk")
        .select_for_update()
        .values_list("pk", "venture_id", "segment_id", "narrative_angle", "variant_label")
    }
    now = timezone.now()
    rows_update(
        NarrativeStat,
        [(ids[k], *deltas[k], now) for k in keys],
        fields=[*COUNTERS, "updated_at"],
        assign={c: f"CASE WHEN t.{c} + v.{c} < 0 THEN 0 ELSE t.{c} + v.{c} END" for c in COUNTERS},
    )


# --- Rebuilding ----------------------------------------------------------------------------------


def history_figures(venture: Venture | None = None) -> dict[ArmKey, tuple[int, ...]]:
    """Every arm's figures computed from the sent emails and their events (one query): what
    the increments add up to."""
    sent = OutboundMessage.objects.filter(
        state=MessageState.SENT, kind=StepKind.EMAIL, template_version__isnull=False
    )
    if venture is not None:
        sent = sent.filter(venture_id=venture.pk)
    events = FeedbackEvent.objects.filter(message=OuterRef("pk"))
    readings = (
        events.filter(kind=FeedbackKind.REPLIED).exclude(sentiment="", objection="").order_by("-pk")
    )
    rows = (
        sent.annotate(
            delivered=Exists(events.filter(kind=FeedbackKind.DELIVERED)),
            replied=Exists(events.filter(kind=FeedbackKind.REPLIED)),
            reading=Subquery(readings.values("sentiment")[:1]),
            reading_objection=Subquery(readings.values("objection")[:1]),
        )
        .order_by()
        .values_list(
            "venture_id", "segment_id", "template_version__narrative_angle",
            "template_version__variant_label",
        )
        .annotate(
            sends=Count("pk"),
            deliveries=Count("pk", filter=Q(delivered=True)),
            replies=Count("pk", filter=Q(replied=True)),
            positive_replies=Count("pk", filter=Q(reading=Sentiment.POSITIVE)),
            objections=Count("pk", filter=Q(reading_objection__gt="")),
        )
    )  # fmt: skip
    return {row[:4]: tuple(row[4:]) for row in rows}


def narrative_rebuild(*, venture: Venture | None = None, actor="narrative") -> dict:
    """Set every arm's figures (of `venture`, or of every venture) to what the messages and
    events say, in one transaction that increments wait for; an audit row for each venture
    whose figures changed. Returns what was rebuilt: arms, sends, positive replies, and the
    arms whose figures changed."""
    from ventures.services import audit_record

    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Increments (ROW EXCLUSIVE) wait until the new figures are in; reads go on.
            with connection.cursor() as cursor:
                table = connection.ops.quote_name(NarrativeStat._meta.db_table)
                cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        stats = NarrativeStat.objects.all()
        if venture is not None:
            stats = stats.filter(venture=venture)
        before = {row[:4]: tuple(row[4:]) for row in stats.values_list(
            "venture_id", "segment_id", "narrative_angle", "variant_label", *COUNTERS)}  # fmt: skip
        after = history_figures(venture)
        stats.delete()
        now = timezone.now()
        NarrativeStat.objects.bulk_create(
            NarrativeStat(
                venture_id=key[0], segment_id=key[1], narrative_angle=key[2] or "",
                variant_label=key[3] or "", updated_at=now,
                **dict(zip(COUNTERS, figures, strict=True)),
            )
            for key, figures in sorted(after.items(), key=lambda kv: _arm_order(kv[0]))
        )  # fmt: skip
        zero = (0,) * len(COUNTERS)
        changed = [
            k for k in before.keys() | after.keys() if before.get(k, zero) != after.get(k, zero)
        ]
        for venture_id in sorted({k[0] for k in changed}):
            audit_record(
                actor=actor,
                action="narrative.rebuilt",
                entity=Venture.objects.get(pk=venture_id),
                after={"arms": sum(1 for k in after if k[0] == venture_id),
                       "arms_changed": sum(1 for k in changed if k[0] == venture_id)},
            )  # fmt: skip
    return {
        "venture": venture.slug if venture is not None else None,
        "arms": len(after),
        "arms_changed": len(changed),
        "sends": sum(f[0] for f in after.values()),
        "positive_replies": sum(f[3] for f in after.values()),
    }


# --- Reading the figures -------------------------------------------------------------------------

Z_95 = 1.959964  # the standard normal's 97.5% quantile


def rate_interval(successes: int, trials: int, *, z: float = Z_95) -> tuple[float, float]:
    """The 95% Wilson score interval of a rate of `successes` in `trials`: unlike the plain
    rate plus or minus two standard errors it stays inside 0..1 and is honest for small
    counts and rates near 0 (the common case here). (0, 1) before any trial."""
    if trials <= 0:
        return 0.0, 1.0
    p = min(max(successes, 0), trials) / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def probability_best(
    arms: Sequence[tuple[int, int]], *, draws: int = PROBABILITY_DRAWS, seed: int = 0
) -> list[float]:
    """For each arm, given as (sends, positive replies), the probability that its positive-reply
    rate is the highest of them: the share of `draws` joint draws from the Beta posteriors in
    which it wins. Seeded, so the same figures always read the same; at 4,000 draws its
    standard error is at most 0.8 percentage points."""
    if len(arms) <= 1:
        return [1.0] * len(arms)
    rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
    posteriors = [beta_posterior(sends, positives) for sends, positives in arms]
    wins = [0] * len(arms)
    for _ in range(draws):
        values = [rng.betavariate(a, b) for a, b in posteriors]
        wins[max(range(len(values)), key=values.__getitem__)] += 1
    return [w / draws for w in wins]


def how_sure(best: float, *, positives: int) -> str:
    """In plain words, how sure the leader of a segment is the best, from its probability of
    being best (and the segment's positive replies: with none, nothing is known yet)."""
    if positives == 0:
        return "too early to tell: no positive replies yet"
    if best >= 0.95:
        return "clear winner"
    if best >= 0.8:
        return "probably the best; keep testing to be sure"
    if best >= 0.5:
        return "ahead, but not sure yet"
    return "too early to tell: no variant stands out yet"
