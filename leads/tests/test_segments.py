"""Which ICP segment a lead falls in: the scorer's rule, the only one (ISO codes included)."""

from __future__ import annotations

import pytest

from leads.scoring import DEFAULT_RULES, LeadScorer
from tests.factories import IcpSegmentFactory

FIT = {"industry": "software", "title": "VP Sales EMEA", "country": "germany"}


def segment_of(segment, **lead) -> int | None:
    scorer = LeadScorer(segments=[segment], rules=DEFAULT_RULES)
    lead = {"title": "", "industry": "", "country": "", "company_size": None, **lead}
    return scorer.score(**lead).segment_id


@pytest.mark.django_db
def test_segment_rules_must_all_match():
    segment = IcpSegmentFactory(
        industries=["Software"],
        title_keywords=["head of sales", "vp sales"],
        countries=["DE", "Germany"],
        company_size_min=51,
        company_size_max=500,
    )
    assert segment_of(segment, **FIT, company_size=120) == segment.pk
    assert segment_of(segment, **FIT, company_size=20) is None
    assert segment_of(segment, **FIT, company_size=None) is None
    assert segment_of(segment, **{**FIT, "title": "Engineer"}, company_size=120) is None
    assert segment_of(segment, **{**FIT, "country": "FR"}, company_size=120) is None
    assert segment_of(segment, **{**FIT, "industry": "retail"}, company_size=120) is None


@pytest.mark.django_db
def test_segment_country_matches_by_name_or_by_its_iso_code():
    by_code = IcpSegmentFactory(countries=["DE"], industries=[], title_keywords=[])
    assert segment_of(by_code, country="Germany") == by_code.pk
    assert segment_of(by_code, country="de") == by_code.pk
    assert segment_of(by_code, country="France") is None


@pytest.mark.django_db
def test_segment_without_rules_matches_everyone():
    segment = IcpSegmentFactory(industries=[], title_keywords=[], countries=[])
    assert segment_of(segment) == segment.pk
