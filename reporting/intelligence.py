"""Campaign intelligence: what the figures of a report say to do next. Rule-based on purpose,
so every suggestion names the figures that triggered it and an operator (or a client) can
check it against the report's own tables:

- `next_best_actions`: shift traffic to a narrative that is very likely best in a segment,
  clean a list or import batch whose bounce rate is high, start a nurture sequence for the
  leads who finished without a reply, settle unknown messages, look at complaint and
  unsubscribe rates over the usual thresholds, fix what blocks messages, drop a follow-up step
  that nobody answers.
- `anomalies`: a day whose sends, replies or bounces break from the campaign's own recent
  history (a drop or a spike against the median of the seven days before it).
- `verdicts`: "what worked / what didn't" in plain words.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reporting.figures import Report

# Thresholds (the deliverability rules of thumb ESPs publish; the same in every report).
BOUNCE_RATE_CLEAN = 0.05  # a list bouncing 5% or more needs cleaning
MIN_SENT_FOR_RATE = 20  # a rate over fewer leads than this says nothing
COMPLAINT_RATE_ALARM = 0.003  # Gmail's and Yahoo's sender guideline: stay under 0.3%
UNSUBSCRIBE_RATE_ALARM = 0.02
SHIFT_TRAFFIC_AT = 0.95  # probability that a variant is best before moving traffic to it
DEAD_STEP_SENDS = 100  # a follow-up with this many sends and no reply is worth dropping
ANOMALY_WINDOW = 7
ANOMALY_FACTOR = 3.0  # a spike: three times the median of the window
DROP_FACTOR = 0.3  # a drop: under 30% of the median
ANOMALY_MIN = 5  # ignore spikes and drops among tiny numbers


@dataclass
class Action:
    priority: int  # 1 = do today
    title: str
    because: str  # the figures that triggered it


@dataclass
class Anomaly:
    day: str
    metric: str
    value: int
    baseline: float
    kind: str  # "spike" or "drop"

    @property
    def text(self) -> str:
        return f"{self.day}: {self.value} {self.metric}, against a median of {self.baseline:g} over the {ANOMALY_WINDOW} days before ({self.kind})"


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def next_best_actions(report: Report) -> list[Action]:
    actions: list[Action] = []
    funnel, messages = report.funnel, report.messages
    if messages["unknown"]:
        actions.append(Action(1, f"Settle {messages['unknown']} unknown messages",
            f"{messages['unknown']} messages may or may not have reached the mail server (a worker "
            "stopped while handing them over); they are never re-sent automatically. Settle each "
            "as sent or not sent from the outbox."))  # fmt: skip
    sent = funnel["sent"]
    if sent >= MIN_SENT_FOR_RATE:
        complaint = funnel["complained"] / sent
        if complaint >= COMPLAINT_RATE_ALARM:
            actions.append(Action(1, "Reduce spam complaints before sending more",
                f"complaint rate {_pct(complaint)} ({funnel['complained']} of {sent} leads sent to), "
                f"above the {_pct(COMPLAINT_RATE_ALARM)} mailbox providers tolerate: tighten "
                "targeting and check the first email's wording."))  # fmt: skip
        unsub = funnel["unsubscribed"] / sent
        if unsub >= UNSUBSCRIBE_RATE_ALARM:
            actions.append(Action(2, "Review targeting: many unsubscribes",
                f"unsubscribe rate {_pct(unsub)} ({funnel['unsubscribed']} of {sent})."))  # fmt: skip
    for segment in report.narratives:
        if len(segment.arms) < 2:
            continue
        best = max(segment.arms, key=lambda a: a.p_best)
        if best.p_best >= SHIFT_TRAFFIC_AT and best.positive:
            others = ", ".join(
                f"{a.label} {a.positive}/{a.sends}" for a in segment.arms if a is not best
            )
            actions.append(Action(2, f"Shift traffic to {best.label} in segment {segment.segment}",
                f"{best.label} beats the others with {best.p_best * 100:.0f}% probability "
                f"(positive replies {best.positive}/{best.sends}; {others})."))  # fmt: skip
    for dimension, label in (("source_list", "list"), ("source_batch", "import batch")):
        for row in report.attribution[dimension]:
            rate = row.bounce_rate
            if (
                row.counts["sent"] >= MIN_SENT_FOR_RATE
                and rate is not None
                and rate >= BOUNCE_RATE_CLEAN
            ):
                actions.append(Action(1, f"Clean {label} {row.value}",
                    f"bounce rate from {label} {row.value} is {_pct(rate)} ({row.counts['bounced']} "
                    f"of {row.counts['sent']} leads sent to): verify its addresses before sending more."))  # fmt: skip
    if report.finished_without_reply:
        actions.append(Action(3, "Start a nurture sequence",
            f"{report.finished_without_reply} leads finished the sequence without a reply."))  # fmt: skip
    for reason, n in report.blocked_by_reason[:3]:
        actions.append(Action(3, f"Look at messages blocked: {reason}",
            f"{n} {'message was' if n == 1 else 'messages were'} blocked for {reason}; the outbox lists them with the full reason."))  # fmt: skip
    for step in report.steps:
        if (
            step.position > 1
            and step.kind == "email"
            and step.sent >= DEAD_STEP_SENDS
            and not step.replied
        ):
            actions.append(Action(3, f"Rewrite or drop {step.label}",
                f"{step.sent} emails sent at this step and no reply."))  # fmt: skip
    return sorted(actions, key=lambda a: a.priority)


def anomalies(report: Report) -> list[Anomaly]:
    found = []
    days = report.timeline
    for metric in ("sent", "replied", "bounced"):
        values = [getattr(d, metric) for d in days]
        for i in range(ANOMALY_WINDOW, len(days)):
            window = values[i - ANOMALY_WINDOW : i]
            baseline = statistics.median(window)
            value = values[i]
            if value >= ANOMALY_MIN and value > ANOMALY_FACTOR * max(baseline, 1):
                found.append(
                    Anomaly(days[i].day.isoformat(), _METRIC[metric], value, baseline, "spike")
                )
            elif (
                metric == "sent"
                and baseline >= ANOMALY_MIN
                and value < DROP_FACTOR * baseline
                and str(days[i].day.isoweekday()) in report.campaign.send_days
            ):
                found.append(
                    Anomaly(days[i].day.isoformat(), _METRIC[metric], value, baseline, "drop")
                )
    return found


_METRIC = {"sent": "emails sent", "replied": "replies", "bounced": "bounces"}


def verdicts(report: Report) -> dict[str, list[str]]:
    """What worked and what didn't, in plain words, each with its figures."""
    worked: list[str] = []
    didnt: list[str] = []
    funnel = report.funnel
    sent = funnel["sent"]
    if not sent:
        return {"worked": [], "didnt": ["Nothing has been sent yet."]}
    reply = funnel["replied"] / sent
    positive = funnel["positive"] / sent
    (worked if positive >= 0.01 else didnt).append(
        f"{funnel['positive']} positive replies from {sent} leads sent to ({_pct(positive)}); "
        f"{funnel['replied']} replies in all ({_pct(reply)})."
    )
    for segment in report.narratives:
        scored = [a for a in segment.arms if a.sends >= MIN_SENT_FOR_RATE]
        if len(scored) >= 2:
            best = max(scored, key=lambda a: a.positive_rate or 0)
            worst = min(scored, key=lambda a: a.positive_rate or 0)
            if best is not worst and (best.positive_rate or 0) > (worst.positive_rate or 0):
                worked.append(
                    f"In {segment.segment}, {best.label} did best: {best.positive} positive of {best.sends} sends ({_pct(best.positive_rate or 0)})."
                )
                didnt.append(
                    f"In {segment.segment}, {worst.label} did worst: {worst.positive} positive of {worst.sends} sends ({_pct(worst.positive_rate or 0)})."
                )
    lists = [r for r in report.attribution["source_list"] if r.counts["sent"] >= MIN_SENT_FOR_RATE]
    if len(lists) >= 2:
        best = max(lists, key=lambda r: r.positive_rate or 0)
        worst = max(lists, key=lambda r: r.bounce_rate or 0)
        if best.counts["positive"]:
            worked.append(
                f"List {best.value} brought the most positive replies per lead: {best.counts['positive']} of {best.counts['sent']} ({_pct(best.positive_rate or 0)})."
            )
        if worst.counts["bounced"]:
            didnt.append(
                f"List {worst.value} bounced the most: {worst.counts['bounced']} of {worst.counts['sent']} ({_pct(worst.bounce_rate or 0)})."
            )
    bounce = funnel["bounced"] / sent
    (didnt if bounce >= BOUNCE_RATE_CLEAN else worked).append(
        f"Bounce rate {_pct(bounce)} ({funnel['bounced']} of {sent})."
    )
    if report.blocked_by_reason:
        total = sum(n for _r, n in report.blocked_by_reason)
        top, n = report.blocked_by_reason[0]
        didnt.append(f"{total} messages were blocked by the guardrails, most for {top} ({n}).")
    return {"worked": worked, "didnt": didnt}
