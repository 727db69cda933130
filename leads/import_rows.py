"""One file row -> the values of a lead, or the row issues that keep it out (`RowNormaliser`).

Every row of every import passes through here, in the preparing process of a big import, so
the normaliser never touches the database and is written for speed: the columns to read are
worked out once per file (`operator.itemgetter`), values that recur (domains, countries,
sizes, scores) come from bounded caches in `leads.normalise` and `leads.scoring`, and the
careful checks (values longer than their column) run only when a cheap test says a row might
fail them. A row is refused only for its email address (missing or invalid) or a value too
long to store; a company size or an amount that does not parse, or a phone too long once
normalised, is kept in the lead's custom fields instead.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from leads.models import (
    ConsentStatus,
    Lead,
    RowIssueKind,
    identity_hash_of,
)
from leads.normalise import (
    InvalidValue,
    company_size_parse,
    consent_parse,
    country_code_of,
    datetime_parse,
    decimal_parse,
    domain_from_website,
    domain_normalise,
    email_key_of,
    email_normalise,
    linkedin_normalise,
    phone_normalise,
    timezone_infer,
    timezone_valid,
    truthy,
)
from leads.parsing import HeaderMapping, header_key
from leads.scoring import LeadScorer

MAX_CUSTOM_VALUE_CHARS = 10_000
_TEXT_FIELDS = (
    "first_name",
    "last_name",
    "full_name",
    "title",
    "company",
    "company_domain",
    "website",
    "linkedin_url",
    "city",
    "state",
    "country",
    "industry",
    "consent_source",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
)


@dataclass
class RowIssue:
    row: int
    column: str
    reason: str
    kind: str = RowIssueKind.INVALID


def _max_lengths() -> dict[str, int]:
    lengths = {f.name: f.max_length for f in Lead._meta.fields if getattr(f, "max_length", None)}
    lengths["full_name"] = lengths["first_name"] + lengths["last_name"]
    lengths["phone_raw"] = 200
    return lengths


class RowNormaliser:
    """Turns one file row into the values of a lead, or into the reasons it cannot be one.

    This runs once per row of every import, so it is written for speed: the columns to read
    are worked out once (`operator.itemgetter`), values that depend only on repeated inputs
    (country, domain, size, scoring) come from bounded caches, and the slow, careful checks
    (over-long values) run only when a cheap test says a row might fail them.
    """

    def __init__(self, *, mapping: HeaderMapping, scorer: LeadScorer) -> None:
        self.present = sorted(mapping.fields.items(), key=lambda item: item[1])
        self.header_of = {f: mapping.headers[i] for f, i in mapping.fields.items()}
        self.custom = mapping.custom
        self.scorer = scorer
        self.lengths = _max_lengths()
        self.shortest_limit = min(self.lengths[name] for name in _TEXT_FIELDS)
        self.signal_names = [
            name for _, name in mapping.custom if header_key(name) in scorer.signal_columns
        ]
        # Rows at least this wide (all of them, in a CSV that passed scan_file) take the fast
        # path: every mapped and custom column read at once.
        self._fields = tuple(f for f, _ in self.present)
        self._take_fields = _taker([i for _, i in self.present])
        self._custom_names = tuple(name for _, name in self.custom)
        self._take_custom = _taker([i for i, _ in self.custom])
        self._width = 1 + max([i for _, i in self.present] + [i for i, _ in self.custom])
        self._score = scorer.score_of
        lengths = self.lengths
        self._first_max, self._last_max = lengths["first_name"], lengths["last_name"]
        self._phone_max, self._linkedin_max = lengths["phone"], lengths["linkedin_url"]
        self._domain_max = lengths["company_domain"]

    def __call__(self, number: int, row: list[str]) -> dict[str, Any] | list[RowIssue]:
        width = len(row)
        # No cell longer than the shortest length limit: no value can be too long.
        short = width >= self._width and max(map(len, row)) <= self.shortest_limit
        if short:
            v = dict(zip(self._fields, map(str.strip, self._take_fields(row)), strict=True))
        else:
            v = {f: row[i].strip() for f, i in self.present if i < width}
        raw_email = v.get("email", "")
        email = ""
        issues: list[RowIssue] | None = None
        if raw_email:
            try:
                email = email_normalise(raw_email)
            except InvalidValue as exc:
                issues = [RowIssue(number, self.header_of["email"], f"Invalid email: {exc}")]
        else:
            issues = [RowIssue(number, self.header_of["email"], "No email address.")]
        if short:
            # The non-empty custom values, in column order.
            values = map(str.strip, self._take_custom(row))
            custom = dict(filter(_second, zip(self._custom_names, values, strict=True)))
        else:
            if max(map(len, v.values()), default=0) > self.shortest_limit:
                issues = self._length_issues(number, v, issues or [])
            custom, issues = self._custom_checked(number, row, width, issues or [])
        if issues:
            return issues
        return self._values(number, v, email, custom)

    def _length_issues(self, number: int, v: dict[str, str], issues: list[RowIssue]) -> list:
        lengths = self.lengths
        for name in _TEXT_FIELDS:
            value = v.get(name)
            if value and len(value) > lengths[name]:
                issues.append(
                    RowIssue(
                        number,
                        self.header_of[name],
                        f"Longer than {lengths[name]} characters ({len(value)}).",
                    )
                )
        return issues

    def _custom_checked(
        self, number: int, row: list[str], width: int, issues: list[RowIssue]
    ) -> tuple[dict[str, str], list[RowIssue]]:
        custom: dict[str, str] = {}
        for i, name in self.custom:
            if i < width:
                value = row[i].strip()
                if value:
                    if len(value) > MAX_CUSTOM_VALUE_CHARS:
                        issues.append(
                            RowIssue(
                                number, name, f"Longer than {MAX_CUSTOM_VALUE_CHARS} characters."
                            )
                        )
                    custom[name] = value
        return custom, issues

    def _values(self, number: int, v: dict[str, str], email: str, custom: dict) -> dict[str, Any]:
        get = v.get
        first, last = get("first_name", ""), get("last_name", "")
        full = get("full_name", "")
        if full and not (first or last):
            first, _, last = full.rpartition(" ") if " " in full else (full, "", "")
        country, state = get("country", ""), get("state", "")
        raw_phone = get("phone", "")
        phone = ""
        if raw_phone:
            region = country_code_of(country) if country else None
            phone = phone_normalise(raw_phone, region=region)
            if len(phone) > self._phone_max:
                custom.setdefault(self.header_of["phone"], raw_phone)
                phone = ""
        website = get("website", "")
        domain = get("company_domain", "")
        domain = domain_normalise(domain) if domain else domain_from_website(website)
        linkedin_raw = get("linkedin_url", "")
        linkedin = linkedin_normalise(linkedin_raw) if linkedin_raw else ""
        if len(linkedin) > self._linkedin_max:
            linkedin = linkedin_raw
        tz_raw = get("timezone", "")
        tz = (timezone_valid(tz_raw) if tz_raw else "") or (
            timezone_infer(country, state) if country else ""
        )
        size_raw = get("company_size", "")
        size = company_size_parse(size_raw) if size_raw else None
        if size_raw and size is None:
            custom.setdefault(self.header_of["company_size"], size_raw)
        consent_raw = get("consent_status", "")
        consent = consent_parse(consent_raw) if consent_raw else ConsentStatus.UNKNOWN
        dnc_raw = get("do_not_contact", "")
        if dnc_raw and truthy(dnc_raw):
            consent = ConsentStatus.DNC
        value_raw = get("value_estimate", "")
        value = decimal_parse(value_raw) if value_raw else None
        if value_raw and value is None:
            custom.setdefault(self.header_of["value_estimate"], value_raw)
        consent_at_raw = get("consent_at", "")
        email_key = email_key_of(email)
        title, industry = get("title", ""), get("industry", "")
        signal_names = self.signal_names
        score = self._score(
            title,
            industry,
            country,
            size,
            frozenset([n for n in signal_names if n in custom]) if signal_names else _NO_SIGNALS,
        )
        return {
            "email": email,
            "email_key": email_key,
            "identity_hash": identity_hash_of(email_key=email_key),
            "first_name": first[: self._first_max],
            "last_name": last[: self._last_max],
            "title": title,
            "company": get("company", ""),
            "company_domain": domain[: self._domain_max],
            "website": website,
            "phone": phone,
            "linkedin_url": linkedin,
            "city": get("city", ""),
            "state": state,
            "country": country,
            "timezone": tz,
            "industry": industry,
            "company_size": size,
            "segment_id": score.segment_id,
            "consent_status": consent,
            "consent_at": datetime_parse(consent_at_raw) if consent_at_raw else None,
            "consent_source": get("consent_source", ""),
            "value_estimate": value,
            "custom_fields": custom,
            "source_row": number,
            "utm_source": get("utm_source", ""),
            "utm_medium": get("utm_medium", ""),
            "utm_campaign": get("utm_campaign", ""),
            "utm_content": get("utm_content", ""),
            "fit_score": score.fit_score,
            "grade": score.grade,
            "score_explanation": score.explanation,
        }


_NO_SIGNALS: frozenset[str] = frozenset()
_second = operator.itemgetter(1)


def _taker(indexes: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """A function returning the values at `indexes` of a row, as a tuple (in C when it can)."""
    if not indexes:
        return lambda row: ()
    if len(indexes) == 1:
        only = indexes[0]
        return lambda row: (row[only],)
    return operator.itemgetter(*indexes)
