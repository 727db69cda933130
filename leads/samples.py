"""Deterministic lead files in the Apollo export layout, for the demo and the benchmark.

The people are invented and every domain ends in `.example`, which never receives mail.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

APOLLO_HEADERS = [
    "First Name",
    "Last Name",
    "Title",
    "Company",
    "Company Name for Emails",
    "Email",
    "Email Status",
    "Seniority",
    "Departments",
    "First Phone",
    "Stage",
    "Lists",
    "# Employees",
    "Industry",
    "Keywords",
    "Person Linkedin Url",
    "Website",
    "Company Linkedin Url",
    "City",
    "State",
    "Country",
    "Apollo Contact Id",
    "Apollo Account Id",
]
_FIRST = [
    "Anna",
    "Ben",
    "Chloe",
    "David",
    "Emma",
    "Felix",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Lars",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
]
_LAST = [
    "Berg",
    "Costa",
    "Dubois",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Meyer",
    "Nguyen",
]
_TITLES = [
    "VP Sales",
    "Head of Growth",
    "Chief Revenue Officer",
    "Sales Manager",
    "Founder & CEO",
    "Account Executive",
    "Director of Operations",
    "CTO",
]
_COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Soylent", "Tyrell", "Wayne"]
_INDUSTRIES = ["Computer Software", "Logistics", "Retail", "Financial Services", "Marketing"]
_PLACES = [
    ("Berlin", "", "Germany"),
    ("Munich", "Bavaria", "Germany"),
    ("Vienna", "", "Austria"),
    ("London", "England", "United Kingdom"),
    ("Austin", "Texas", "United States"),
    ("New York", "New York", "United States"),
    ("Bengaluru", "Karnataka", "India"),
]
_SIZES = ["11", "51", "201", "1001", "5001"]


def apollo_rows(count: int, *, seed: int = 7, start: int = 0):
    """Yield `count` Apollo-layout rows with unique email addresses."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not security
    for n in range(start, start + count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        company = rng.choice(_COMPANIES)
        domain = f"{company.lower()}{n % 997}.example"
        city, state, country = rng.choice(_PLACES)
        yield [
            first,
            last,
            rng.choice(_TITLES),
            f"{company} GmbH",
            company,
            f"{first.lower()}.{last.lower()}.{n}@{domain}",
            rng.choice(["Verified", "Unavailable"]),
            "Vp",
            "Sales",
            f"+1 {512 + n // 8_000_000 % 400:03d} {200 + n // 10_000 % 800:03d} {n % 10_000:04d}",
            "Cold",
            "Bench list",
            rng.choice(_SIZES),
            rng.choice(_INDUSTRIES),
            "saas, b2b",
            f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}-{n}",
            f"https://{domain}",
            f"https://www.linkedin.com/company/{domain}",
            city,
            state,
            country,
            f"{n:024x}",
            f"{n % 997:024x}",
        ]


def write_apollo_file(path: Path, count: int, *, seed: int = 7) -> Path:
    """Write an Apollo-layout CSV (UTF-8 with BOM, CRLF, as Apollo exports it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(APOLLO_HEADERS)
        writer.writerows(apollo_rows(count, seed=seed))
    return path
