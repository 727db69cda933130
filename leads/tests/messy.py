"""A messy lead list and a realistic scoring setup, for the golden-output test and the bench.

The rows are what real exports look like after a few hands touched them: emails in mixed case
with stray spaces (some invalid, some internationalised, some repeated), phones in national and
international formats, LinkedIn URLs with tracking parameters, countries and states spelled
many ways, company sizes as ranges, consent columns, values with currency signs, an intent
column that the scoring rules read, and the odd over-long or formula-like cell. Seeded, so the
same (count, seed) always gives the same file: the golden snapshot depends on it. Do not change
what an existing seed produces.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from leads.scoring import Rule

MESSY_HEADERS = [
    "Work Email",
    "First Name",
    "Last Name",
    "Full Name",
    "Job Title",
    "Company",
    "Company Domain",
    "Website",
    "Mobile Phone",
    "LinkedIn Profile URL",
    "City",
    "State/Region",
    "Country",
    "Time Zone",
    "Number of Employees",
    "Industry",
    "Consent",
    "Do Not Contact",
    "Consent Date",
    "Consent Source",
    "Deal Value",
    "utm_source",
    "utm_campaign",
    "Intent Topic",
    "icebreaker",
    "Notes",
]

_FIRST = ["anna", "Ben", "CHLOÉ", "David", "Émile", "felix", "Grete", "Hugo", "Ines", "Jürgen"]
_FIRST += ["Kira", "Lars", "Mia", "Noah", "Olga", "Paul", "Søren", "Zoë", "O'Neil", "Li"]
_LAST = ["Berg", "costa", "Dubois", "FISCHER", "García", "Hansen", "Ito", "Jensen", "Kowalski"]
_LAST += ["López", "Meyer", "Nguyen", "van der Berg", "O'Brien", "Müller", "Smith-Jones"]
_TITLES = [
    "VP Sales",
    "vp of sales",
    "Head of Revenue Operations",
    "Chief Revenue Officer",
    "Sales Manager",
    "Founder & CEO",
    "co-founder",
    "Account Executive",
    "Director of Operations",
    "CTO",
    "RevOps Lead",
    "Head of Sales DACH",
    "Marketing Intern",
    "Managing Director",
    "",
]
_COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Soylent", "Tyrell", "Wayne"]
_COMPANIES += ["Stark", "Wonka", "Cyberdyne", "Aperture", "Bücher", "Müller & Söhne"]
_TLDS = ["example", "example", "example", "co.example", "EXAMPLE"]
_INDUSTRIES = ["Computer Software", "software", "SaaS", "Logistics", "Retail", "Internet"]
_INDUSTRIES += ["Financial Services", "Marketing & Advertising", ""]
_PLACES = [
    ("Berlin", "", "Germany"),
    ("Munich", "Bavaria", "germany"),
    ("Hamburg", "", "DE"),
    ("Vienna", "", "Austria"),
    ("Wien", "", "Österreich"),
    ("Zurich", "ZH", "Switzerland"),
    ("London", "England", "United Kingdom"),
    ("Leeds", "", "UK"),
    ("Austin", "Texas", "United States"),
    ("New York", "NY", "USA"),
    ("Albany", "new york", "U.S."),
    ("San Francisco", "CA", "United States"),
    ("Seattle", "Washington", "US"),
    ("Denver", "co", "usa"),
    ("Toronto", "Ontario", "Canada"),
    ("Calgary", "AB", "Canada"),
    ("Sydney", "NSW", "Australia"),
    ("Perth", "WA", "Australia"),
    ("Bengaluru", "Karnataka", "India"),
    ("Paris", "", "France"),
    ("Madrid", "", "Spain"),
    ("São Paulo", "SP", "Brazil"),
    ("Amsterdam", "", "the Netherlands"),
    ("Atlantis", "", "Atlantis"),
    ("", "", ""),
]
_ZONES = ["", "", "", "", "Europe/Berlin", "America/Chicago", "UTC", "CET", "Mars/Olympus"]
_SIZES = ["11", "51-200", "1,001-5,000", "10000+", "201-500", "2-10", "n/a", "", "500", "11-50"]
_CONSENT = ["", "", "", "yes", "No", "opt-in", "Unsubscribed", "maybe", "TRUE"]
_DNC = ["", "", "", "", "", "x", "yes", "no", "DNC"]
_DATES = ["", "", "2025-03-01", "2025-03-01 10:15", "01/02/2025", "2025-02-30", "yesterday"]
_DATES += ["2025-03-01T10:15:00Z", "15.04.2025"]
_VALUES = ["", "", "", "1500", "1,500.50", "€2.000", "$ 300", "abc", "-5", "99999999999"]
_UTM = ["", "", "linkedin", "Newsletter", "partner"]
_INTENT = ["", "", "", "", "pricing page", "CRM migration", "hiring SDRs"]
_ICEBREAKERS = ["", "", "Loved your post!", "Saw you at {{ event }}", "=HYPERLINK(1)"]


def _email(rng: random.Random, first: str, last: str, n: int, domain: str) -> str:
    local = f"{first}.{last}".replace(" ", "").replace("'", "")
    shape = rng.random()
    if shape < 0.55:
        address = f"{local.lower()}.{n}@{domain.lower()}"
    elif shape < 0.7:
        address = f"{local}.{n}@{domain.upper()}"
    elif shape < 0.78:
        address = f"  {local.lower()}+news.{n}@{domain} "
    elif shape < 0.83:
        address = f"{local.lower()}.{n % 40}@{domain.lower()}"  # repeats: duplicates in the file
    elif shape < 0.86:
        address = f"{local.lower()} at {domain}"
    elif shape < 0.88:
        address = ""
    elif shape < 0.9:
        address = f"{local.lower()}.{n}@{domain}."
    elif shape < 0.92:
        address = f'"{local.lower()}".{n}@{domain}'
    elif shape < 0.94:
        address = f"{local.lower()}..{n}@{domain}"
    elif shape < 0.96:
        address = f"{local.lower()}.{n}@xn--bcher-kva.example"
    elif shape < 0.98:
        address = f"{local.lower()}.{n}@mail.{domain.lower()}"
    else:
        address = f"{local.lower()}.{n}@{domain.lower()}.invalid"
    return address


def _phone(rng: random.Random, n: int, country: str) -> str:
    tail = f"{n % 10_000:04d}"
    return rng.choice(
        [
            "",
            f"+1 512 555 {tail}",
            f"+1 (512) 555-{tail}",
            f"(512) 555-{tail}",
            f"512.555.{tail}",
            f"+49 30 1234{tail}",
            f"030 1234{tail}",
            f"+49 (0) 89 123{tail}",
            f"0049 89 123{tail}",
            f"+44 20 7946 {tail}",
            f"+44 (0)20 7946 {tail}",
            f"07700 90{tail}",
            f"+43 1 234{tail}",
            f"+91 98765 4{tail}",
            f"+61 2 9876 {tail}",
            f"+33 1 23 45 {tail[:2]} {tail[2:]}",
            f"+1 512 555 {tail} ext. 12",
            "n/a",
            f"+{n % 1000}",
            f"tel:+4930{tail}",
        ]
    )


def _linkedin(rng: random.Random, first: str, last: str, n: int) -> str:
    slug = f"{first}-{last}-{n}".replace(" ", "")
    return rng.choice(
        [
            "",
            f"https://www.linkedin.com/in/{slug.lower()}",
            f"https://www.linkedin.com/in/{slug}/",
            f"http://de.linkedin.com/in/{slug.lower()}?trk=public_profile",
            f"linkedin.com/in/{slug.lower()}#about",
            f"www.linkedin.com/in/{slug.lower()}/?utm_source=share&utm_medium=member_desktop",
            f"https://WWW.LINKEDIN.COM/in/{slug}",
            f"https://www.linkedin.com/in/{slug.lower()}%C3%A9",
            f"https://linkedin.com/in/{slug.lower()}/detail/contact-info/",
            f"https://www.linkedin.com:443/in/{slug.lower()}",
            f"https://example.com/in/{slug.lower()}",
            "linkedin",
        ]
    )


def messy_rows(count: int, *, seed: int = 11):
    """Yield `count` rows in MESSY_HEADERS order."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not security
    earlier: list[str] = []
    for n in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        company = rng.choice(_COMPANIES)
        domain = (
            f"{company.lower().replace(' & ', '-').replace(' ', '')}{n % 53}.{rng.choice(_TLDS)}"
        )
        city, state, country = rng.choice(_PLACES)
        full = f"{first} {last}"
        if rng.random() < 0.1:
            first = last = ""
        website = rng.choice(["", f"https://{domain}", f"http://www.{domain}/about", domain])
        notes = "x" * rng.choice([0, 0, 0, 0, 20, 120])
        email = _email(rng, first or "x", last or "y", n, domain)
        if earlier and rng.random() < 0.06:  # the same person again, spelled differently
            email = rng.choice([str.upper, str.lower, lambda e: f" {e}  "])(rng.choice(earlier))
        elif len(earlier) < 500 and "@" in email:
            earlier.append(email)
        title = rng.choice(_TITLES)
        if rng.random() < 0.005:
            title = "T" * 300  # over the column's length: a row issue
        yield [
            email,
            f" {first} " if rng.random() < 0.1 else first,
            last,
            full,
            title,
            rng.choice([company, f"{company} GmbH", f"{company}, Inc.", ""]),
            rng.choice(["", "", domain, f"WWW.{domain.upper()}", f"https://{domain}/"]),
            website,
            _phone(rng, n, country),
            _linkedin(rng, first, last, n),
            city,
            state,
            rng.choice([country, country.upper(), f" {country} "]) if country else "",
            rng.choice(_ZONES),
            rng.choice(_SIZES),
            rng.choice(_INDUSTRIES),
            rng.choice(_CONSENT),
            rng.choice(_DNC),
            rng.choice(_DATES),
            rng.choice(["", "", "webinar form", "event badge scan"]),
            rng.choice(_VALUES),
            rng.choice(_UTM),
            rng.choice(["", "", "q3-dach", "Spring Launch"]),
            rng.choice(_INTENT),
            rng.choice(_ICEBREAKERS),
            notes,
        ]


def write_messy_file(path: Path, count: int, *, seed: int = 11) -> Path:
    """Write the messy list as UTF-8 CSV (comma, CRLF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(MESSY_HEADERS)
        writer.writerows(messy_rows(count, seed=seed))
    return path


# Segments like docs/examples/demo-campaign.toml's, plus one with sizes only.
SEGMENTS = [
    {
        "slug": "dach-revops",
        "name": "DACH revenue operations",
        "priority": 10,
        "industries": ["Software", "SaaS", "Computer Software"],
        "title_keywords": ["revenue operations", "revops", "sales operations", "head of sales"],
        "countries": ["DE", "AT", "CH", "Germany", "Austria", "Switzerland"],
        "company_size_min": 50,
        "company_size_max": 500,
    },
    {
        "slug": "us-saas-revenue",
        "name": "US SaaS revenue leaders",
        "priority": 20,
        "industries": ["Software", "SaaS", "Computer Software", "Internet"],
        "title_keywords": ["vp sales", "cro", "chief revenue officer", "revenue operations"],
        "countries": ["US", "USA", "United States"],
        "company_size_min": 100,
        "company_size_max": 1000,
    },
    {
        "slug": "uk-founders",
        "name": "UK founders",
        "priority": 30,
        "industries": [],
        "title_keywords": ["founder", "ceo", "managing director"],
        "countries": ["GB", "United Kingdom"],
        "company_size_min": None,
        "company_size_max": 200,
    },
]

RULES: tuple[Rule, ...] = (
    Rule("in an ICP segment", "segment", points=35),
    Rule("DACH segment", "segment", values=("dach-revops",), points=10),
    Rule("senior title", "title", values=("vp", "head of", "chief", "founder", "cto"), points=20),
    Rule("software industry", "industry", values=("software", "saas", "computer software")),
    Rule("core country", "country", values=("de", "us", "gb", "Austria"), points=10),
    Rule("company size 11-1000", "company_size", size_min=11, size_max=1000, points=15),
    Rule("buying signal", "custom", values=("Intent Topic", "signals"), points=20),
)


def unsaved_segments() -> list:
    """SEGMENTS as IcpSegment instances with fixed primary keys, never saved (no database)."""
    from ventures.models import IcpSegment

    return [IcpSegment(pk=100 + i, **spec) for i, spec in enumerate(SEGMENTS)]


def save_scoring_setup(venture) -> None:
    """Store SEGMENTS and RULES for a venture (for tests that import through the database)."""
    from leads.models import ScoringRule
    from ventures.models import IcpSegment

    for spec in SEGMENTS:
        IcpSegment.objects.create(venture=venture, **spec)
    for rule in RULES:
        ScoringRule.objects.create(
            venture=venture,
            label=rule.label,
            field=rule.field,
            values=list(rule.values),
            size_min=rule.size_min,
            size_max=rule.size_max,
            points=rule.points,
        )
