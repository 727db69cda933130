"""ICP segment matching and fit scoring, with a sentence that says why.

A `LeadScorer` is built once per import or re-score from the venture's segments and scoring
rules (or DEFAULT_RULES when the venture has none) and caches its answer per distinct
combination of the inputs, so a million leads cost a few thousand evaluations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from leads.models import Grade, ScoringField, ScoringRule
from leads.normalise import country_code_of
from leads.parsing import header_key
from ventures.models import IcpSegment, Venture


@dataclass(frozen=True)
class Rule:
    label: str
    field: str
    values: tuple[str, ...] = ()
    size_min: int | None = None
    size_max: int | None = None
    points: int = 10


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("in an ICP segment", ScoringField.SEGMENT, points=40),
    Rule(
        "senior title",
        ScoringField.TITLE,
        values=(
            "vp",
            "vice president",
            "head of",
            "chief",
            "ceo",
            "cto",
            "cfo",
            "coo",
            "cro",
            "cmo",
            "founder",
            "co founder",
            "owner",
            "director",
            "president",
            "partner",
            "managing director",
        ),
        points=25,
    ),
    Rule("company size 11-1000", ScoringField.COMPANY_SIZE, size_min=11, size_max=1000, points=15),
    Rule(
        "buying signal",
        ScoringField.CUSTOM,
        values=("intent", "intent topic", "intent signal", "buying signal", "signals", "trigger"),
        points=20,
    ),
)

GRADE_THRESHOLDS = ((75, Grade.A), (50, Grade.B), (25, Grade.C))
_WORDS = re.compile(r"[^0-9a-z]+")


def grade_of(score: int) -> str:
    for threshold, grade in GRADE_THRESHOLDS:
        if score >= threshold:
            return grade
    return Grade.D


def _words(text: str) -> str:
    return " " + _WORDS.sub(" ", text.lower()).strip() + " "


@dataclass(frozen=True)
class Score:
    segment_id: int | None
    fit_score: int
    grade: str
    explanation: str


@dataclass
class LeadScorer:
    segments: list[IcpSegment]
    rules: tuple[Rule, ...]
    signal_columns: frozenset[str] = field(init=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.signal_columns = frozenset(
            header_key(v) for r in self.rules if r.field == ScoringField.CUSTOM for v in r.values
        )

    @classmethod
    def for_venture(cls, venture: Venture) -> LeadScorer:
        segments = list(IcpSegment.objects.filter(venture=venture).order_by("priority", "name"))
        stored = [
            Rule(
                label=r.label,
                field=r.field,
                values=tuple(str(v) for v in (r.values or [])),
                size_min=r.size_min,
                size_max=r.size_max,
                points=r.points,
            )
            for r in ScoringRule.objects.filter(venture=venture, is_active=True)
        ]
        return cls(segments=segments, rules=tuple(stored) or DEFAULT_RULES)

    def signals_present(self, custom_fields: dict[str, str]) -> frozenset[str]:
        if not self.signal_columns or not custom_fields:
            return frozenset()
        return frozenset(
            k for k, v in custom_fields.items() if v and header_key(k) in self.signal_columns
        )

    def score(
        self,
        *,
        title: str,
        industry: str,
        country: str,
        company_size: int | None,
        signals: frozenset[str] = frozenset(),
    ) -> Score:
        key = (title, industry, country, company_size, signals)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) > 50_000:
                self._cache.clear()
            found = self._cache[key] = self._evaluate(*key)
        return found

    def _segment_for(
        self, title: str, industry: str, country: str, size: int | None
    ) -> IcpSegment | None:
        code = country_code_of(country) if country else None
        for segment in self.segments:
            if segment.matches(industry=industry, title=title, country=country, company_size=size):
                return segment
            if (
                code
                and segment.countries
                and segment.matches(industry=industry, title=title, country=code, company_size=size)
            ):
                return segment
        return None

    def _evaluate(
        self, title: str, industry: str, country: str, size: int | None, signals: frozenset[str]
    ) -> Score:
        segment = self._segment_for(title, industry, country, size)
        title_words = _words(title)
        matched: list[tuple[str, int]] = []
        for rule in self.rules:
            if _rule_matches(rule, segment, title_words, industry, country, size, signals):
                matched.append((rule.label, rule.points))
        total = max(0, min(100, sum(p for _, p in matched)))
        grade = grade_of(total)
        return Score(
            segment_id=segment.pk if segment else None,
            fit_score=total,
            grade=grade,
            explanation=_explain(title, industry, size, segment, matched, total, grade),
        )


def _rule_matches(rule, segment, title_words, industry, country, size, signals) -> bool:
    values = [v.strip().lower() for v in rule.values if v.strip()]
    if rule.field == ScoringField.SEGMENT:
        return segment is not None and (not values or segment.slug.lower() in values)
    if rule.field == ScoringField.TITLE:
        return any(_words(v) in title_words for v in values)
    if rule.field == ScoringField.INDUSTRY:
        return industry.strip().lower() in values
    if rule.field == ScoringField.COUNTRY:
        code = (country_code_of(country) or "").lower() if country else ""
        return bool(country) and (country.strip().lower() in values or code in values)
    if rule.field == ScoringField.COMPANY_SIZE:
        if size is None:
            return False
        return (rule.size_min is None or size >= rule.size_min) and (
            rule.size_max is None or size <= rule.size_max
        )
    if rule.field == ScoringField.CUSTOM:
        wanted = {header_key(v) for v in values}
        return any(header_key(s) in wanted for s in signals)
    return False


def _explain(title, industry, size, segment, matched, total, grade) -> str:
    who = title or "Unknown title"
    company = " ".join(
        p for p in (f"{size}-employee" if size is not None else "", industry) if p
    ).strip()
    sentence = f"{who} at a {company} company" if company else f"{who} at an unknown company"
    sentence += f" in segment {segment.name}" if segment else ", no ICP segment matched"
    reasons = (
        ", ".join(f"{label} ({points:+d})" for label, points in matched) or "no signal matched"
    )
    return f"{sentence}: {reasons}. Score {total}, grade {grade}."
