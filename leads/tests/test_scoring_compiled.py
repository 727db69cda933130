"""LeadScorer prepares segments and rules once; it must answer as the plain reading of them.

`_reference_score` is the scorer as it was before it prepared anything (each segment's rules
and each rule's values lower-cased per lead); random leads, segments and rules must get the
same Score from both.
"""

from __future__ import annotations

import random

from leads.models import ScoringField
from leads.normalise import country_code_of
from leads.parsing import header_key
from leads.scoring import DEFAULT_RULES, LeadScorer, Rule, Score, _explain, _words, grade_of
from leads.tests.messy import RULES, unsaved_segments
from ventures.models import IcpSegment


def _lower(values: list[str]) -> set[str]:
    return {v.strip().lower() for v in values if v.strip()}


def _reference_matches(segment, *, industry="", title="", country="", company_size=None) -> bool:
    """The plain reading of a segment's rules: every rule it sets must hold."""
    if segment.industries and (industry or "").strip().lower() not in _lower(segment.industries):
        return False
    if segment.countries and (country or "").strip().lower() not in _lower(segment.countries):
        return False
    if segment.title_keywords:
        title_l = (title or "").lower()
        if not any(k in title_l for k in _lower(segment.title_keywords)):
            return False
    if segment.company_size_min is not None or segment.company_size_max is not None:
        if company_size is None:
            return False
        if segment.company_size_min is not None and company_size < segment.company_size_min:
            return False
        if segment.company_size_max is not None and company_size > segment.company_size_max:
            return False
    return True


def _reference_segment(segments, title, industry, country, size):
    code = country_code_of(country) if country else None
    for segment in segments:
        if _reference_matches(
            segment, industry=industry, title=title, country=country, company_size=size
        ):
            return segment
        if (
            code
            and segment.countries
            and _reference_matches(
                segment, industry=industry, title=title, country=code, company_size=size
            )
        ):
            return segment
    return None


def _reference_rule(rule, segment, title_words, industry, country, size, signals) -> bool:
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


def _reference_score(segments, rules, title, industry, country, size, signals) -> Score:
    segment = _reference_segment(segments, title, industry, country, size)
    title_words = _words(title)
    matched = [
        (r.label, r.points)
        for r in rules
        if _reference_rule(r, segment, title_words, industry, country, size, signals)
    ]
    total = max(0, min(100, sum(p for _, p in matched)))
    grade = grade_of(total)
    return Score(
        segment_id=segment.pk if segment else None,
        fit_score=total,
        grade=grade,
        explanation=_explain(title, industry, size, segment, matched, total, grade),
    )


WORDS = ["vp", "VP", "sales", "Head of", "revops", "ceo", "Founder", "", " ", "saas", "chief"]
INDUSTRIES = ["Software", " software ", "SaaS", "Logistics", "", "Computer Software", "retail"]
COUNTRIES = ["DE", "Germany", " germany", "USA", "United States", "UK", "gb", "Atlantis", ""]
COUNTRIES += ["Österreich", "austria", "CH"]
SIGNALS = ["Intent Topic", "intent_topic", "Signals", "trigger", "other"]


def _random_segment(rng: random.Random, n: int) -> IcpSegment:
    def some(pool):
        return rng.sample(pool, rng.randint(0, 3)) if rng.random() < 0.8 else []

    low = rng.choice([None, None, 10, 50, 200])
    high = rng.choice([None, None, 100, 500, 1000])
    return IcpSegment(
        pk=n,
        slug=rng.choice(["dach", "US-SaaS", "uk"]) + str(n),
        name=f"Segment {n}",
        industries=some(INDUSTRIES),
        title_keywords=some([*WORDS, "revenue operations"]),
        countries=some(COUNTRIES),
        company_size_min=low,
        company_size_max=high if low is None or high is None or high >= low else None,
    )


def _random_rule(rng: random.Random, n: int) -> Rule:
    field = rng.choice([*ScoringField.values, "unknown"])
    pool = {
        "title": WORDS,
        "industry": INDUSTRIES,
        "country": COUNTRIES,
        "custom": SIGNALS,
        "segment": ["dach0", "US-SaaS1", "uk2", ""],
    }.get(field, [])
    return Rule(
        label=f"rule {n}",
        field=field,
        values=tuple(rng.sample(pool, rng.randint(0, min(3, len(pool))))),
        size_min=rng.choice([None, 11, 100]),
        size_max=rng.choice([None, 50, 1000]),
        points=rng.randint(-20, 50),
    )


def test_prepared_scorer_gives_the_reference_score_on_random_leads_segments_and_rules():
    rng = random.Random(29)  # noqa: S311 - reproducible test data
    setups = [(unsaved_segments(), RULES), ([], DEFAULT_RULES)]
    for _ in range(60):
        segments = [_random_segment(rng, i) for i in range(rng.randint(0, 4))]
        rules = tuple(_random_rule(rng, i) for i in range(rng.randint(0, 6)))
        setups.append((segments, rules))
    checked = 0
    for segments, rules in setups:
        scorer = LeadScorer(segments=segments, rules=rules)
        for _ in range(300):
            title = " ".join(rng.sample(WORDS, rng.randint(0, 3)))
            industry = rng.choice(INDUSTRIES)
            country = rng.choice(COUNTRIES)
            size = rng.choice([None, 5, 11, 50, 51, 200, 500, 1000, 5000])
            signals = frozenset(rng.sample(SIGNALS, rng.randint(0, 2)))
            expected = _reference_score(segments, rules, title, industry, country, size, signals)
            assert (
                scorer.score(
                    title=title,
                    industry=industry,
                    country=country,
                    company_size=size,
                    signals=signals,
                )
                == expected
            ), (title, industry, country, size, signals, segments, rules)
            checked += 1
    assert checked == 62 * 300
