"""A campaign report as a client reads it: one self-contained HTML document (styles and charts
inline, nothing fetched: it opens from a mail attachment or a USB stick), the same HTML
printed to PDF, and Markdown for a wiki or a ticket. Every format shows the same figures,
from one `reporting.figures.Report`; the admin page shows the same body inside the console.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from reporting.figures import ATTRIBUTION_COLUMNS, DIMENSIONS, FUNNEL, Report

_STATIC = Path(__file__).resolve().parent / "static" / "reporting"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Short column heads for the attribution tables (every funnel stage).
COLUMN_LABELS = {
    "imported": "Leads",
    "enrolled": "Enrolled",
    "suppressed_dnc": "Kept out",
    "erased": "Erased",
    "eligible": "Eligible",
    "sent": "Sent to",
    "delivered": "Delivered",
    "opened": "Opened*",
    "clicked": "Clicked",
    "replied": "Replied",
    "positive": "Positive",
    "autoreplied": "Auto-replied",
    "bounced": "Bounced",
    "complained": "Complained",
    "unsubscribed": "Unsub.",
}


def pct(rate: float | None, digits: int = 1) -> str:
    return "–" if rate is None else f"{rate * 100:.{digits}f}%"


def money(value: Decimal | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def days_text(send_days: str) -> str:
    """Send days "12345" as "Mon–Fri", "135" as "Mon, Wed, Fri"."""  # noqa: RUF002
    days = sorted({int(d) for d in send_days})
    if len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
        return f"{WEEKDAYS[days[0] - 1]}–{WEEKDAYS[days[-1] - 1]}"
    return ", ".join(WEEKDAYS[d - 1] for d in days) or "none"


def local(value: dt.datetime | None, report: Report) -> str:
    if value is None:
        return "–"
    return timezone.localtime(value, report.campaign.tzinfo).strftime("%Y-%m-%d %H:%M")


def charts(report: Report) -> dict[str, str]:
    """The report's charts as inline SVG documents."""
    from reporting.charts import funnel_chart, steps_chart, timeline_chart

    email_steps = [s for s in report.steps if s.kind == "email" and (s.sent or s.scheduled)]
    return {
        "funnel": funnel_chart(
            [(label, report.funnel[key]) for key, label in FUNNEL if key not in ("erased",)],
            title="Lead funnel",
        ),
        "timeline": timeline_chart(
            [d.day for d in report.timeline],
            {
                "Sent": [d.sent for d in report.timeline],
                "Replied": [d.replied for d in report.timeline],
                "Bounced": [d.bounced for d in report.timeline],
            },
            title=f"Per day ({report.campaign.timezone})",
        ),
        "steps": steps_chart(
            [f"{s.sequence} #{s.position}" for s in email_steps],
            {
                "Sent": [s.sent for s in email_steps],
                "Replied": [s.replied for s in email_steps],
                "Bounced": [s.bounced for s in email_steps],
            },
            title="Emails by sequence step",
        ),
    }


def context(report: Report, *, with_charts: bool = True) -> dict[str, Any]:
    """What the report's templates read: the figures with their labels, rates and texts."""
    funnel = [
        {"key": key, "label": label, "count": report.funnel[key],
         "rate": pct(report.rate(key)) if key in _PER_SENT else ""}
        for key, label in FUNNEL
    ]  # fmt: skip
    attribution = [
        {
            "label": label,
            "rows": [
                {"value": b.value, "counts": [b.counts[c] for c in ATTRIBUTION_COLUMNS],
                 "reply_rate": pct(b.reply_rate), "positive_rate": pct(b.positive_rate)}
                for b in report.attribution[dimension]
            ],
        }
        for dimension, label in DIMENSIONS
    ]  # fmt: skip
    return {
        "report": report,
        "s": report.summary,
        "send_days": days_text(report.summary["send_days"]),
        "generated": local(report.generated_at, report),
        "started": local(report.summary["started_at"], report),
        "finished": local(report.summary["finished_at"], report),
        "history": [{**h, "at": local(h["at"], report)} for h in report.status_history],
        "pauses": [{**p, "at": local(p["at"], report)} for p in report.auto_pauses],
        "funnel": funnel,
        "attribution": attribution,
        "attribution_columns": [COLUMN_LABELS[c] for c in ATTRIBUTION_COLUMNS],
        "narratives": [
            {
                "segment": seg.segment,
                "verdict": seg.verdict,
                "arms": [
                    {
                        "label": a.label,
                        "sends": a.sends,
                        "replies": a.replies,
                        "positive": a.positive,
                        "objections": a.objections,
                        "positive_rate": pct(a.positive_rate),
                        "interval": f"{pct(a.interval[0])} – {pct(a.interval[1])}",
                        "p_best": pct(a.p_best, 0),
                    }
                    for a in seg.arms
                ],
            }
            for seg in report.narratives
        ],
        "steps": [
            {
                "label": s.label,
                "kind": s.kind,
                "sent": s.sent,
                "scheduled": s.scheduled,
                "skipped": s.skipped,
                "blocked": s.blocked,
                "failed": s.failed,
                "unknown": s.unknown,
                "replied": s.replied,
                "positive": s.positive,
                "bounced": s.bounced,
                "reply_rate": pct(s.reply_rate),
            }
            for s in report.steps
        ],
        "roi": {
            "value": money(report.roi.value),
            "cost": money(report.roi.cost),
            "multiple": f"{report.roi.multiple}x" if report.roi.multiple is not None else "–",
            "cost_per_positive": money(report.roi.cost_per_positive),
            "per_reply": money(report.roi.value_per_positive_reply),
            "fixed_cost": money(report.roi.fixed_cost),
            "cost_per_email": f"{report.roi.cost_per_email:.4f}",
        },
        "charts": charts(report) if with_charts else {},
    }


# Funnel stages shown with a rate per lead sent to.
_PER_SENT = {"delivered", "opened", "clicked", "replied", "positive", "autoreplied", "bounced",
             "complained", "unsubscribed"}  # fmt: skip


def report_css(*, document: bool = True) -> str:
    """The report's styles: its own layout (scoped under .aicmo-report, so the admin page can
    use it), then, for a document of its own, the print stylesheet (A4 pages, page numbers)."""
    base = (_STATIC / "report_base.css").read_text(encoding="utf-8")
    if not document:
        return base
    from reporting.pdf import print_stylesheet

    return print_stylesheet() + "\n" + base


def render_html(report: Report) -> str:
    """The self-contained HTML document."""
    return render_to_string(
        "reporting/report_document.html", {**context(report), "css": report_css()}
    )


def render_pdf(report: Report) -> bytes:
    from reporting.pdf import html_to_pdf

    return html_to_pdf(render_html(report))


def render_markdown(report: Report) -> str:
    c = context(report, with_charts=False)
    s = report.summary
    out: list[str] = []
    add = out.append
    add(f"# {s['campaign']}: campaign report\n")
    add(f"Venture **{s['venture']}** · campaign `{s['slug']}` · {s['mode']} mode · "
        f"{s['status']}{' (killed)' if s['killed'] else ''} · generated {c['generated']} "
        f"({s['timezone']})\n")  # fmt: skip
    if s["objective"]:
        add(f"> {s['objective']}\n")
    add("## Summary\n")
    add(_table(("", ""), [
        ("Started", c["started"]), ("Finished", c["finished"]),
        ("Send window", f"{s['send_window']} {c['send_days']} ({s['timezone']})"),
        ("Daily limit", f"campaign {s['daily_send_limit']}, venture {s['venture_daily_limit']}, "
                        f"global {s['global_daily_limit']}"),
        ("Warm-up", s["warmup"]), ("Reply SLA", f"{s['reply_sla_hours']} h" if s["reply_sla_hours"] else "none"),
        ("Sequences", "; ".join(f"{q['name']} ({q['enrolled']} leads)" for q in report.sequences) or "none"),
        ("Mailboxes", "; ".join(f"{m['from']} ({m['sent']} sent, limit {m['daily_limit']}/day)" for m in report.mailboxes) or "none"),
    ]))  # fmt: skip
    if c["history"]:
        add("### Status history\n")
        add(_table(("When", "What", "Who", "Why"),
                   [(h["at"], h["action"], h["actor"], h["reason"]) for h in c["history"]]))  # fmt: skip
    add("## Funnel\n")
    add(_table(("Stage", "Leads", "Rate per lead sent to"),
               [(f["label"], f["count"], f["rate"]) for f in c["funnel"]]))  # fmt: skip
    m = report.messages
    add(_table(("Messages", "Count"), [
        ("Emails sent", m["emails_sent"]), ("Waiting to be sent", m["scheduled"]),
        ("Blocked by a guardrail", m["blocked"]), ("Failed", m["failed"]),
        ("Unknown, to settle", m["unknown"]), ("Manual tasks done", m["tasks_done"]),
        ("Manual tasks skipped", m["tasks_skipped"]), ("Manual tasks open", m["tasks_open"]),
    ]))  # fmt: skip
    if report.blocked_by_reason:
        add("### Blocked messages by reason\n")
        add(_table(("Reason", "Messages"), report.blocked_by_reason))
    if report.unsubscribe_reasons:
        add("### Unsubscribes by reason\n")
        add(_table(("Reason", "Leads"), report.unsubscribe_reasons))
    if report.import_issues:
        add("### Rows of the imports that did not become leads\n")
        add(_table(("Why", "Rows"), list(report.import_issues.items())))
    if c["pauses"]:
        add("### Auto-pauses\n")
        add(
            _table(
                ("When", "What", "Why"), [(p["at"], p["what"], p["reason"]) for p in c["pauses"]]
            )
        )
    add("## Attribution\n")
    add("Where the leads that replied came from.\n")
    for table in c["attribution"]:
        add(f"### By {table['label']}\n")
        add(_table((table["label"], *c["attribution_columns"], "Reply rate", "Positive rate"),
                   [(r["value"], *r["counts"], r["reply_rate"], r["positive_rate"]) for r in table["rows"]]))  # fmt: skip
    add("## Narrative performance\n")
    if not c["narratives"]:
        add("No email has been sent yet.\n")
    for seg in c["narratives"]:
        add(f"### Segment {seg['segment']}: {seg['verdict']}\n")
        add(_table(("Narrative", "Sends", "Replies", "Positive", "Positive rate", "95% interval",
                    "P(best)", "Objections"),
                   [(a["label"], a["sends"], a["replies"], a["positive"], a["positive_rate"],
                     a["interval"], a["p_best"], a["objections"]) for a in seg["arms"]]))  # fmt: skip
    if report.objections:
        add("### Objections\n")
        add(_table(("Objection", "Replies"), report.objections))
    add("## Sequence steps\n")
    add(_table(("Step", "Sent / done", "Waiting", "Skipped", "Blocked", "Failed", "Unknown", "Replied", "Positive", "Bounced", "Reply rate"),
               [(s["label"], s["sent"], s["scheduled"], s["skipped"], s["blocked"], s["failed"],
                 s["unknown"], s["replied"], s["positive"], s["bounced"],
                 s["reply_rate"]) for s in c["steps"]]))  # fmt: skip
    add(f"## Daily timeline ({s['timezone']})\n")
    add(_table(("Day", "Sent", "Replied", "Bounced", "Unsubscribed"),
               [(d.day.isoformat(), d.sent, d.replied, d.bounced, d.unsubscribed) for d in report.timeline])
        if report.timeline else "Nothing has happened yet.\n")  # fmt: skip
    r = c["roi"]
    add("## ROI proxy\n")
    add(_table(("", ""), [
        ("Positive replies", report.roi.positive),
        ("Estimated value", f"{r['value']} ({report.roi.valued_by_lead} at the lead's own estimate, "
                            f"the rest at {r['per_reply']} each)"),
        ("Cost", f"{r['cost']} (fixed {r['fixed_cost']} + {report.roi.emails_sent} emails at {r['cost_per_email']})"),
        ("Value / cost", r["multiple"]), ("Cost per positive reply", r["cost_per_positive"]),
    ]))  # fmt: skip
    add("## Next-best actions\n")
    add("\n".join(f"{i}. **{a.title}**: {a.because}" for i, a in enumerate(report.actions, 1))
        + "\n" if report.actions else "Nothing to do: no rule fired.\n")  # fmt: skip
    add("## Anomalies\n")
    add("\n".join(f"- {a.text}" for a in report.anomalies) + "\n"
        if report.anomalies else "None against the campaign's own history.\n")  # fmt: skip
    add("## What worked\n")
    add(
        "\n".join(f"- {line}" for line in report.verdicts["worked"]) + "\n"
        if report.verdicts["worked"]
        else "- Nothing yet.\n"
    )
    add("## What didn't\n")
    add(
        "\n".join(f"- {line}" for line in report.verdicts["didnt"]) + "\n"
        if report.verdicts["didnt"]
        else "- Nothing stood out.\n"
    )
    return "\n".join(out)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple, rows: list) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
