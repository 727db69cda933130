"""Single-value normalisation; the fast email path must agree with email-validator."""

from __future__ import annotations

import csv
import random

import pytest

from leads.normalise import (
    InvalidValue,
    company_size_parse,
    email_normalise,
    email_normalise_slow,
    linkedin_normalise,
    phone_normalise,
    timezone_infer,
)

TRICKY = [
    "plain@acme.example",
    "First.Last@ACME.Example",
    "  spaced@acme.example ",
    "user+tag@sub.acme.example",
    "o'brien@acme.example",
    "a!#$%&'*+/=?^_`{|}~-z@acme.example",
    "x@localhost",
    "x@acme",
    "x@acme.test",
    "x@acme.invalid",
    "x@acme.local",
    "x@-acme.example",
    "x@acme-.example",
    "x@acme..example",
    "x@acme.example.",
    "x@123.456",
    "x@acme.123",
    "x@[192.0.2.1]",
    ".x@acme.example",
    "x.@acme.example",
    "x..y@acme.example",
    '"quoted"@acme.example',
    "a b@acme.example",
    "a@b@acme.example",
    "name at acme.example",
    "@acme.example",
    "x@",
    "x" * 64 + "@acme.example",
    "x" * 65 + "@acme.example",
    "x@" + "a" * 63 + ".example",
    "x@" + "a" * 64 + ".example",
    "x@" + ("a" * 60 + ".") * 4 + "example",
    "y" * 60 + "@" + ("b" * 60 + ".") * 3 + "example",
    "ünïcode@acme.example",
    "x@bücher.example",
    "x@xn--bcher-kva.example",
    "x@XN--BCHER-KVA.example",
    "x@acme.example\u200b",
    "x\u00a0@acme.example",
    "x@acme_corp.example",
    "x@acme.co.uk",
    "postmaster@acme.example",
    "x@a.b",
    "x@sub-domain.acme.example",
    "Info@acme.example",  # RFC 2142 names are lower-cased by email-validator
    "SALES@ACME.example",
    "PostMaster@bücher.example",
    "jürgen@bücher.example",
    "jürgen@xn--bcher-kva.example",
]


def _both(value: str):
    results = []
    for fn in (email_normalise, email_normalise_slow):
        try:
            results.append(("ok", fn(value.strip())))
        except InvalidValue as exc:
            results.append(("error", str(exc)))
    return results


@pytest.mark.parametrize("address", TRICKY)
def test_fast_email_path_agrees_with_email_validator_on_tricky_addresses(address):
    fast, slow = _both(address)
    assert fast == slow


def test_fast_email_path_agrees_with_email_validator_on_every_sample_row(sample_dir):
    checked = 0
    for name, encoding, delimiter, column in [
        ("apollo_export_sample.csv", "utf-8-sig", ",", "Email"),
        ("hubspot_export_sample.csv", "cp1252", ";", "Email"),
        ("lemlist_export_sample.csv", "utf-8", ",", "email"),
    ]:
        with (sample_dir / name).open(encoding=encoding, newline="") as fh:
            for row in csv.DictReader(fh, delimiter=delimiter):
                if row[column].strip():
                    fast, slow = _both(row[column])
                    assert fast == slow, row[column]
                    checked += 1
    assert checked > 100


def test_fast_email_path_agrees_with_email_validator_on_random_addresses():
    rng = random.Random(3)  # noqa: S311 - reproducible test data
    alphabet = "abcXYZ019.-_+'@ !é"
    for _ in range(20000):
        local = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        domain = "".join(rng.choice("abcXY019.-_") for _ in range(rng.randint(0, 12)))
        tld = rng.choice(["example", "com", "test", "c", "1", ""])
        address = f"{local}@{domain}.{tld}" if rng.random() < 0.9 else local
        fast, slow = _both(address)
        assert fast == slow, address


def test_phone_numbers_become_e164_when_parseable_and_are_kept_otherwise():
    assert phone_normalise("+1 512 555 0000") == "+15125550000"
    assert phone_normalise("030 1234567", region="DE") == "+49301234567"
    assert phone_normalise("+44 (0) 20 7946 0000") == "+442079460000"
    assert phone_normalise("call me maybe") == "call me maybe"
    assert phone_normalise("") == ""


def test_linkedin_urls_are_normalised_and_other_values_kept():
    expected = "https://www.linkedin.com/in/jane-doe"
    for raw in [
        "https://www.linkedin.com/in/Jane-Doe/",
        "http://de.linkedin.com/in/jane-doe?trk=public",
        "linkedin.com/in/jane-doe#about",
        "www.linkedin.com/in/jane-doe/",
    ]:
        assert linkedin_normalise(raw) == expected
    assert linkedin_normalise("https://example.com/in/jane") == "https://example.com/in/jane"


def test_time_zone_is_inferred_only_when_the_country_or_state_is_unambiguous():
    assert timezone_infer("Germany") == "Europe/Berlin"
    assert timezone_infer("DE") == "Europe/Berlin"
    assert timezone_infer("United Kingdom", "England") == "Europe/London"
    assert timezone_infer("India", "Karnataka") == "Asia/Kolkata"
    assert timezone_infer("United States") == ""
    assert timezone_infer("United States", "Texas") == ""  # split between two zones
    assert timezone_infer("United States", "New York") == "America/New_York"
    assert timezone_infer("USA", "CA") == "America/Los_Angeles"
    assert timezone_infer("Brazil") == ""
    assert timezone_infer("Atlantis") == ""


@pytest.mark.parametrize(
    ("raw", "size"),
    [("11", 11), ("51-200", 51), ("1,001-5,000", 1001), ("10000+", 10000), ("n/a", None)],
)
def test_company_size_takes_the_lower_bound_of_a_range(raw, size):
    assert company_size_parse(raw) == size


def _phone_cases():
    import phonenumbers

    rng = random.Random(11)  # noqa: S311 - reproducible test data
    cases = ["+1 512 555 0000", "+1 112 555 0000", "+44 20 7946 0000", "+39 06 1234 5678"]
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number(region)
        if example:
            for fmt in (
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.E164,
            ):
                cases.append(phonenumbers.format_number(example, fmt))
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    for _ in range(20000):
        code = rng.choice(codes)
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 16)))
        sep = rng.choice([" ", "-", ".", ""])
        chunks = [digits[i : i + rng.randint(1, 4)] for i in range(0, len(digits), 3)]
        cases.append(f"+{code}{rng.choice([' ', ''])}" + sep.join(c for c in chunks if c))
    return cases


def _phone_cases_with_parentheses():
    """'+1 (512) 555-0100', '+44 (0)20 ...' and unbalanced or doubled parentheses."""
    import phonenumbers

    rng = random.Random(13)  # noqa: S311 - reproducible test data
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    cases = ["+1 (512) 555-0100", "+44 (0)20 7946 0000", "+49 (0) 89 1234567", "+1 (512 555 0100"]
    for _ in range(20000):
        number = f"+{rng.choice(codes)}"
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 14)))
        i = 0
        while i < len(digits):
            size = rng.randint(1, 4)
            sep = rng.choice([" ", "-", ".", "", "(", ")", " (", ") ", "((", "()"])
            number += sep + digits[i : i + size]
            i += size
        cases.append(number)
    return cases


def test_fast_phone_path_agrees_with_phonenumbers():
    from leads.normalise import _phone_fast, phone_normalise_slow

    used_fast = 0
    for raw in _phone_cases() + _phone_cases_with_parentheses():
        fast = _phone_fast(raw)
        if fast is not None:
            used_fast += 1
            for region in (None, "US", "DE", "GB"):
                assert fast == phone_normalise_slow(raw, region=region), (raw, region)
    assert used_fast > 8000  # random lengths are often impossible: those take the slow path


def _validator_domain(domain: str) -> str | None:
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email("x@" + domain, check_deliverability=False).normalized.partition("@")[
            2
        ]
    except EmailNotValidError:
        return None


def _domain_cases():
    rng = random.Random(17)  # noqa: S311 - reproducible test data
    cases = [
        "acme.example",
        "ACME.Example",
        "a.b",
        "a.b1",
        "a.1",
        "acme.test",
        "acme.TEST",
        "mail.acme.invalid",
        "acme.local",
        "localhost",
        "x.onion",
        "in-addr.arpa",
        "xn--bcher-kva.example",
        "ab--cd.example",
        "a-.example",
        "-a.example",
        "a..example",
        ".a.example",
        "a.example.",
        "a_b.example",
        "a" * 63 + ".example",
        "a" * 64 + ".example",
        ("a" * 62 + ".") * 4 + "exam",  # 252 characters
        ("a" * 62 + ".") * 4 + "examp",  # 253
        ("a" * 62 + ".") * 4 + "exampl",  # 254
    ]
    for _ in range(30000):
        if rng.random() < 0.5:
            domain = "".join(rng.choice("abcxyzXNQ019-._") for _ in range(rng.randint(0, 20)))
        else:
            labels = [
                "".join(rng.choice("abXn0-") for _ in range(rng.randint(0, rng.choice([5, 64]))))
                for _ in range(rng.randint(1, 5))
            ]
            tld = rng.choice(["", ".com", ".test", ".Local", ".c0m", ".x", ".Arpa", ".e."])
            domain = ".".join(labels) + tld
        cases.append(domain)
    return cases


def test_plain_domain_shortcut_agrees_with_email_validator():
    from leads.normalise import _plain_domain_accepted

    shortcut = 0
    for domain in _domain_cases():
        if _plain_domain_accepted(domain):
            shortcut += 1
            assert _validator_domain(domain) == domain.lower(), domain
    assert shortcut > 2000


def test_fast_email_path_agrees_with_email_validator_on_many_distinct_domains():
    """Every address here has a domain not seen before, so each takes the domain shortcut or
    email-validator once, then the cached answer."""
    rng = random.Random(23)  # noqa: S311 - reproducible test data
    for n, domain in enumerate(_domain_cases()[:8000]):
        local = rng.choice(["jo", "J.Doe", "a+b", "o'neil", "x..y", "é", "info", "Sales"])
        for address in (f"{local}{n}@{domain}", f"{local}{n}@{domain.upper()}"):
            fast, slow = _both(address)
            assert fast == slow, address


DOMAINS = ["acme.example", "ACME.example", "a.test", "x", "bücher.example", "BÜCHER.Example"]
DOMAINS += ["xn--bcher-kva.example", "XN--BCHER-KVA.example", "xn--abc.example", "ß.example"]
DOMAINS += ["bücher。example", "bu\u0308cher.example", "\u0301acme.example", "مثال.example"]
DOMAINS += ["ｅxample.com", "bücher.example.", "b\u00fccher-.example", "例え.テスト"]
DOMAINS += [("ü" * 20 + ".") * 8 + "example", ("u" * 60 + ".") * 3 + "bücher.example"]


def test_fast_email_path_agrees_with_email_validator_on_internationalised_local_parts():
    """Letters with accents, composed and decomposed (NFD), combining marks first, spaces,
    invisible and full-width characters, symbols, RFC 2142 names ('Info'), internationalised
    domains (Unicode and Punycode, valid and not) and lengths near the limits in UTF-8 and in
    the IDNA ASCII form."""
    from leads.normalise import _plain_intl_local

    rng = random.Random(31)  # noqa: S311 - reproducible test data
    alphabet = [*"abcXYZ09.-_+'!", "é", "ü", "ø", "ß", "ñ", "Ø", "É", "ç", "ı", "İ", "ſ"]
    alphabet += ["e\u0301", "\u0301", "\u00a0", "\u200b", "\u037e", "＠", "ｅ", "😀", "Å"]
    alphabet += ["\u2028", "\ufeff", "ǅ", "ⅷ", "²", "\u3000", "한", "字", "\x85", "@"]
    fast_used = 0
    for n in range(20000):
        local = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10)))
        if rng.random() < 0.02:
            local = local * 30
        domain = rng.choice(DOMAINS)
        if rng.random() < 0.05:
            local = rng.choice(["Info", "SALES", "postmaster", "Abuse", "www", "news"])
        address = f"{local}{n}@{domain}" if rng.random() < 0.95 else f"{local}@{domain}"
        fast, slow = _both(address)
        assert fast == slow, address
        fast_used += not local.isascii() and _plain_intl_local(f"{local}{n}")
    assert fast_used > 1000


def test_website_host_fast_path_agrees_with_urlsplit():
    from leads.normalise import _PLAIN_WEBSITE, domain_from_website, domain_from_website_slow

    rng = random.Random(37)  # noqa: S311 - reproducible test data
    cases = [
        "https://www.acme.example/about",
        "http://WWW.Acme.Example",
        "acme.example",
        "acme.example/?u=http://other.example",
        "https://acme.example:8080/x",
        "https://user@acme.example",
        "https://[::1]/x",
        "ftp://acme.example",
        "https:///path",
        "www.",
        "acme.example.",
        "HTTPS://ACME.EXAMPLE#top",
    ]
    parts = ["http", "https", "HTTP", "://", ":/", "//", "www.", "WWW.", "acme", "a-b", "."]
    parts += ["example", "/", "?", "#", ":", "@", "[", "]", "%41", "\t", "\n", " ", "é", "ſ", "K"]
    parts += ["\x01", "1", "-", "x=y", "ftp"]
    for _ in range(30000):
        cases.append("".join(rng.choice(parts) for _ in range(rng.randint(1, 8))))
    fast = 0
    for value in cases:
        assert domain_from_website.__wrapped__(value) == domain_from_website_slow(value), value
        fast += _PLAIN_WEBSITE.fullmatch(value.strip()) is not None
    assert fast > 3000


def test_fast_national_phone_path_agrees_with_phonenumbers_in_every_region():
    """'(512) 555-0100' in the US, '030 1234567' in Germany: random digits and example numbers
    of every region, with and without a leading 0, separators and parentheses, compared with
    phonenumbers."""
    import phonenumbers

    from leads.normalise import _phone_fast_national, phone_normalise_slow

    rng = random.Random(41)  # noqa: S311 - reproducible test data
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    common = ["US", "CA", "DE", "GB", "AT", "CH", "FR", "IN", "AU", "BR", "IT", "RU"]
    used_fast = 0
    for _ in range(40000):
        region = rng.choice(regions + common * 10)
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 13)))
        example = phonenumbers.example_number(region) if rng.random() < 0.4 else None
        if example:
            digits = str(example.national_number)
        if rng.random() < 0.4:
            digits = "0" + digits  # the usual national prefix, or an Italian leading zero
        number, i = "", 0
        while i < len(digits):
            size = rng.randint(1, 4)
            seps = [""] if not i else ["", " ", "-", ".", "(", ")", " (", ") ", "  "]
            number += rng.choice(["(", *seps] if not i else seps) + digits[i : i + size]
            i += size
        fast = _phone_fast_national(number, region)
        if fast is not None:
            used_fast += 1
            assert fast == phone_normalise_slow(number, region=region), (number, region)
    assert _phone_fast_national("(512) 555-0100", "US") == "+15125550100"
    assert _phone_fast_national("030 1234567", "DE") == "+49301234567"
    assert _phone_fast_national("0049 30 1234567", "DE") is None  # international prefix
    assert _phone_fast_national("512 555 0100", None) is None  # no region: phonenumbers fails
    assert used_fast > 12000


def test_fast_email_path_agrees_with_email_validator_near_the_length_limits():
    """Internationalised domains and local parts whose address is just under or over 254
    octets in UTF-8 or in the IDNA ASCII form, where email-validator's checks differ: Unicode
    labels, full-width letters (shorter once normalised) and Punycode labels (longer once
    decoded)."""
    import idna

    def punycode(i: int) -> str:
        return idna.encode("例" * 18 + str(i)).decode("ascii")

    labels = [lambda i, t=text: f"{t}{i}" for text in ("bücher", "ü" * 12, "ab" * 25 + "ü")]
    labels += [lambda i, t=text: f"{t}{i}" for text in ("b" * 55, "例" * 18, "ｅ" * 20)]
    labels.append(punycode)
    checked = 0
    for count in range(1, 5):
        for label in labels:
            domain = ".".join(label(i) for i in range(count)) + ".example"
            for local in ("a", "é", "jö"):
                for size in range(1, 130, 3):
                    fast, slow = _both((local * size)[:size] + "@" + domain)
                    assert fast == slow, (size, local, domain)
                    checked += 1
    assert checked > 2000
