"""ICP segment matching and fit scoring, with a sentence that says why.

A `LeadScorer` is built once per import or re-score from the venture's segments and scoring
rules (or DEFAULT_RULES when the venture has none) and caches its answer per distinct
combination of the inputs, so a million leads cost a few thousand evaluations.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
        # Segments and rules with their lists lower-cased once, not per lead.
        self._segments = [_CompiledSegment.of(s) for s in self.segments]
        self._rules = [_CompiledRule.of(r) for r in self.rules]

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
        return self.score_of(title, industry, country, company_size, signals)

    def score_of(
        self,
        title: str,
        industry: str,
        country: str,
        company_size: int | None,
        signals: frozenset[str],
    ) -> Score:
        """`score` with positional arguments, for the importer's per-row loop."""
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
        """The first segment (in priority order) whose rules all hold for the lead, trying the
        country as given and then its ISO code. This is the only segment rule."""
        if not self._segments:
            return None
        code = country_code_of(country) if country else None
        code_l = code.strip().lower() if code else ""
        industry_l = (industry or "").strip().lower()
        country_l = (country or "").strip().lower()
        title_l = (title or "").lower()
        for segment in self._segments:
            if segment.matches(industry_l, title_l, country_l, code_l, size):
                return segment.segment
        return None

    def _evaluate(
        self, title: str, industry: str, country: str, size: int | None, signals: frozenset[str]
    ) -> Score:
        segment = self._segment_for(title, industry, country, size)
        facts = _Facts(title, industry, country, size, signals)
        matched = [(r.label, r.points) for r in self._rules if r.matches(r, segment, facts)]
        total = max(0, min(100, sum(p for _, p in matched)))
        grade = grade_of(total)
        return Score(
            segment_id=segment.pk if segment else None,
            fit_score=total,
            grade=grade,
            explanation=_explain(title, industry, size, segment, matched, total, grade),
        )


def _lower(values) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in values if v.strip())


@dataclass(frozen=True)
class _CompiledSegment:
    """An IcpSegment's rules, lower-cased once: `matches` is true when every rule the segment
    sets holds for the lead's fields, its country given as a name or as its ISO code
    (leads/tests/test_scoring_compiled.py compares it with a plain reading of the rules)."""

    segment: IcpSegment
    industries: frozenset[str] | None  # None: any
    countries: frozenset[str] | None
    title_keywords: tuple[str, ...] | None
    size_min: int | None
    size_max: int | None

    @classmethod
    def of(cls, segment: IcpSegment) -> _CompiledSegment:
        return cls(
            segment=segment,
            industries=_lower(segment.industries) if segment.industries else None,
            countries=_lower(segment.countries) if segment.countries else None,
            title_keywords=tuple(sorted(_lower(segment.title_keywords)))
            if segment.title_keywords
            else None,
            size_min=segment.company_size_min,
            size_max=segment.company_size_max,
        )

    def matches(
        self, industry_l: str, title_l: str, country_l: str, code_l: str, size: int | None
    ) -> bool:
        if self.industries is not None and industry_l not in self.industries:
            return False
        if self.countries is not None and not (
            country_l in self.countries or (code_l and code_l in self.countries)
        ):
            return False
        if self.title_keywords is not None and not any(k in title_l for k in self.title_keywords):
            return False
        if self.size_min is not None or self.size_max is not None:
            if size is None:
                return False
            if self.size_min is not None and size < self.size_min:
                return False
            if self.size_max is not None and size > self.size_max:
                return False
        return True


class _Facts:
    """A lead's inputs to the rules, each derived form computed at most once."""

    __slots__ = ("_country_code", "_title_words", "country", "industry", "signals", "size", "title")

    def __init__(self, title, industry, country, size, signals) -> None:
        self.title, self.industry, self.country = title, industry, country
        self.size, self.signals = size, signals
        self._title_words: str | None = None
        self._country_code: str | None = None

    @property
    def title_words(self) -> str:
        if self._title_words is None:
            self._title_words = _words(self.title)
        return self._title_words

    @property
    def country_code(self) -> str:
        if self._country_code is None:
            country = self.country
            self._country_code = (country_code_of(country) or "").lower() if country else ""
        return self._country_code


@dataclass(frozen=True)
class _CompiledRule:
    """A Rule with its values prepared once; `matches(rule, segment, facts)`."""

    label: str
    points: int
    matches: Callable[[_CompiledRule, IcpSegment | None, _Facts], bool]
    values: tuple[str, ...] = ()
    value_set: frozenset[str] = frozenset()
    size_min: int | None = None
    size_max: int | None = None

    @classmethod
    def of(cls, rule: Rule) -> _CompiledRule:
        values = tuple(v.strip().lower() for v in rule.values if v.strip())
        common = {"label": rule.label, "points": rule.points, "values": values}
        if rule.field == ScoringField.SEGMENT:
            return cls(**common, value_set=frozenset(values), matches=_segment_rule)
        if rule.field == ScoringField.TITLE:
            return cls(
                **{**common, "values": tuple(_words(v) for v in values)}, matches=_title_rule
            )
        if rule.field == ScoringField.INDUSTRY:
            return cls(**common, value_set=frozenset(values), matches=_industry_rule)
        if rule.field == ScoringField.COUNTRY:
            return cls(**common, value_set=frozenset(values), matches=_country_rule)
        if rule.field == ScoringField.COMPANY_SIZE:
            return cls(**common, size_min=rule.size_min, size_max=rule.size_max, matches=_size_rule)
        if rule.field == ScoringField.CUSTOM:
            wanted = frozenset(header_key(v) for v in values)
            return cls(**common, value_set=wanted, matches=_custom_rule)
        return cls(**common, matches=_no_rule)


def _segment_rule(rule: _CompiledRule, segment, facts: _Facts) -> bool:
    return segment is not None and (not rule.values or segment.slug.lower() in rule.value_set)


def _title_rule(rule: _CompiledRule, segment, facts: _Facts) -> bool:
    if not rule.values:
        return False
    title_words = facts.title_words
    return any(v in title_words for v in rule.values)


def _industry_rule(rule: _CompiledRule, segment, facts: _Facts) -> bool:
    return facts.industry.strip().lower() in rule.value_set


def _country_rule(rule: _CompiledRule, segment, facts: _Facts) -> bool:
    country = facts.country
    return bool(country) and (
        country.strip().lower() in rule.value_set or facts.country_code in rule.value_set
    )


def _size_rule(rule: _CompiledRule, segment, facts: _Facts) -> bool:
    size = facts.size
    if size is None:
        return False
    return (rule.size_min is None or size >= rule.size_min) and (
        rule.size_max is None or size <= rule.size_max
    )


def _custom_rule(rule: _CompiledRule, segment, facts: _Facts) -> bool:
    return any(header_key(s) in rule.value_set for s in facts.signals)


def _no_rule(rule: _CompiledRule, segment, facts: _Facts) -> bool:
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
