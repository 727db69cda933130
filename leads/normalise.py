"""Normalisation of single lead values: email, phone, LinkedIn URL, time zone, company size.

Every function here is pure and cached where the same input recurs; the importer calls them
once per row, so they are written for speed. The fast email path gives exactly the result of
email-validator (tests compare the two on the samples and on tricky addresses).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import unicodedata
import zoneinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import unquote, urlsplit

import email_validator
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT_INTL

from leads.models import ConsentStatus


class InvalidValue(ValueError):
    """A value that cannot be used, with a message for the operator."""


# --- email -------------------------------------------------------------------------------------

# An unquoted ASCII dot-atom local part (RFC 5322 atext), which email-validator accepts as is.
_SIMPLE_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_ASCII_DOMAIN = re.compile(r"[A-Za-z0-9.-]+")
_DOMAIN_CACHE_MAX = 100_000
_domain_cache: dict[str, tuple[str, str, bool] | None] = {}
_CASE_INSENSITIVE_MAILBOXES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


def email_normalise_slow(value: str) -> str:
    """email-validator's normalised form (no DNS); raises InvalidValue with its message."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidValue(str(exc)) from None


# A plain host name in lower case: letters, digits and inner hyphens per label (at most 63
# characters), at least two labels.
_PLAIN_HOSTNAME = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
_SPECIAL_USE_TLDS = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)
# The shortcut below answers for email-validator's defaults (no test environment, globally
# deliverable) and for special-use names that are single labels; otherwise it stays off.
_PLAIN_DOMAIN_SHORTCUT = (
    email_validator.GLOBALLY_DELIVERABLE
    and not email_validator.TEST_ENVIRONMENT
    and all("." not in name for name in _SPECIAL_USE_TLDS)
)


def _plain_domain_accepted(domain: str) -> bool:
    """True when email-validator certainly accepts "x@" + domain and normalises the domain to
    its lower-case spelling: a plain host name (no Punycode, no double hyphen, which it checks
    through IDNA), at most 252 characters, whose top-level label ends in a letter and is not
    special-use. False means: ask email-validator (tests compare the two)."""
    lower = domain.lower()
    return (
        _PLAIN_DOMAIN_SHORTCUT
        and len(domain) <= 252
        and "--" not in lower
        and lower[-1:].isalpha()
        and _PLAIN_HOSTNAME.fullmatch(lower) is not None
        and lower.rpartition(".")[2] not in _SPECIAL_USE_TLDS
    )


def _domain_normalised(domain: str) -> tuple[str, str, bool] | None:
    """(normalised domain, its IDNA ASCII form, whether both are the domain's lower-case ASCII
    spelling) if email-validator accepts the domain, else None (cached per domain)."""
    found = _domain_cache.get(domain, False)
    if found is not False:
        return found
    result: tuple[str, str, bool] | None
    if _plain_domain_accepted(domain):
        lower = domain.lower()
        result = (lower, lower, True)
    else:
        try:
            checked = validate_email("x@" + domain, check_deliverability=False)
            plain = _ASCII_DOMAIN.fullmatch(domain) is not None and checked.domain == domain.lower()
            result = (checked.domain, checked.ascii_domain, plain)
        except EmailNotValidError:
            result = None
    if len(_domain_cache) >= _DOMAIN_CACHE_MAX:
        _domain_cache.clear()
    _domain_cache[domain] = result
    return result


def email_normalise(value: str) -> str:
    """Trim and validate an address; returns email-validator's normalised form.

    Fast path: a plain local part (ASCII, or internationalised letters already in NFC) and a
    domain that email-validator accepted before give local@<its normalised domain> without
    re-running the validator, when the address is within the length limit in each of the
    forms it checks. Everything else goes through email-validator itself.
    """
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if (
        at
        and len(local) <= 64
        and len(value) <= 254
        and (
            _SIMPLE_LOCAL.fullmatch(local)
            if local.isascii()
            else len(value.encode("utf-8")) <= 254 and _plain_intl_local(local)
        )
    ):
        found = _domain_cache.get(domain, False)
        if found is False:
            found = _domain_normalised(domain)
        if found is not None:
            normalised, ascii_domain, plain = found
            if local.lower() in _CASE_INSENSITIVE_MAILBOXES:
                pass  # RFC 2142 names ('Info@') are lower-cased by email-validator: left to it
            elif plain:
                return local + "@" + normalised
            else:
                # An internationalised domain ('bücher.example', 'xn--bcher-kva.example'): the
                # address's lengths count in UTF-8 and in the IDNA ASCII form.
                address = local + "@" + normalised
                if (
                    len(address.encode("utf-8")) <= 254
                    and len(value.encode("utf-8")) <= 254
                    and len(local.encode("utf-8")) + 1 + len(ascii_domain) <= 254
                ):
                    return address
    return email_normalise_slow(value)


def _plain_intl_local(local: str) -> bool:
    """An unquoted local part with non-ASCII letters ("jürgen.müller") that email-validator
    keeps as it is: its internationalised dot-atom syntax, only letters, digits, punctuation
    and symbols (no marks, spaces or controls, which it checks further) and already in NFC."""
    return (
        DOT_ATOM_TEXT_INTL.match(local) is not None
        and all(unicodedata.category(c)[0] in "LNPS" for c in local)
        and unicodedata.is_normalized("NFC", local)
    )


def email_key_of(email: str) -> str:
    """The case-insensitive dedup key of a normalised address."""
    return email.lower()


def email_domain_of(email_key: str) -> str:
    return email_key.rpartition("@")[2]


# --- phone -------------------------------------------------------------------------------------

_PHONE_CACHE_MAX = 200_000
_phone_cache: dict[tuple[str, str | None], str] = {}


_PLUS_NUMBER = re.compile(r"\+[1-9][0-9 .\-()]*[0-9]")
_DIGIT_SEPARATORS = str.maketrans("", "", " .-()")


@functools.lru_cache(maxsize=1024)
def _calling_code_rules(code: int) -> tuple[re.Pattern | None, frozenset[int]] | None:
    """(national prefix pattern, possible lengths) of a calling code's main region."""
    region = phonenumbers.region_code_for_country_code(code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    if metadata is None or metadata.general_desc is None:
        return None
    desc = metadata.general_desc
    lengths = frozenset(desc.possible_length or ()) | frozenset(
        desc.possible_length_local_only or ()
    )
    if not lengths or -1 in lengths:
        return None
    prefix = metadata.national_prefix_for_parsing
    return (re.compile(prefix) if prefix else None), lengths


@functools.lru_cache(maxsize=2048)
def _plus_rules(head: str) -> tuple[int, re.Pattern | None, frozenset[int]] | None:
    """(length of the calling code, its national prefix pattern, possible lengths) for a
    number whose first (up to) three digits are `head`."""
    for size in (1, 2, 3):
        code = int(head[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    rules = _calling_code_rules(code)
    return None if rules is None else (size, *rules)


def _phone_fast(value: str) -> str | None:
    """E.164 for '+<digits with spaces, dots, hyphens or parentheses>' when phonenumbers would
    give exactly '+' and the digits: the national number has no national prefix to strip, no
    leading zero, and a possible length. None means: ask phonenumbers (tests compare the two)."""
    if not _PLUS_NUMBER.fullmatch(value):
        return None
    digits = value[1:].translate(_DIGIT_SEPARATORS)
    found = _plus_rules(digits[:3])
    if found is None:
        return None
    size, prefix, lengths = found
    national = digits[size:]
    if not national or national[0] == "0" or len(national) > 17:
        return None
    if (prefix is not None and prefix.match(national)) or len(national) not in lengths:
        return None
    return "+" + digits


_NATIONAL_NUMBER = re.compile(r"\(?[0-9][0-9 .\-()]*[0-9]")


@dataclasses.dataclass(frozen=True)
class _RegionRules:
    code: str  # calling code
    idd: re.Pattern | None  # international dialling prefix
    prefix: re.Pattern | None  # national prefix
    literal_prefix: str  # the national prefix when it is plain digits ('0'), else ''
    general: re.Pattern | None  # the region's national number pattern
    lengths: frozenset[int]  # its possible lengths, without the local-only ones


@functools.lru_cache(maxsize=1024)
def _region_rules(region: str) -> _RegionRules | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or not metadata.country_code or metadata.general_desc is None:
        return None
    idd, prefix = metadata.international_prefix, metadata.national_prefix_for_parsing
    desc = metadata.general_desc
    plain = prefix and prefix.isdigit() and not metadata.national_prefix_transform_rule
    return _RegionRules(
        code=str(metadata.country_code),
        idd=re.compile(idd) if idd else None,
        prefix=re.compile(prefix) if prefix else None,
        literal_prefix=prefix if plain else "",
        general=re.compile(desc.national_number_pattern) if desc.national_number_pattern else None,
        lengths=frozenset(desc.possible_length or ())
        - frozenset(desc.possible_length_local_only or ()),
    )


def _phone_fast_national(value: str, region: str | None) -> str | None:
    """E.164 for a national number ('(512) 555-0100' in the US, '030 1234567' in Germany) when
    phonenumbers would give '+<calling code><digits>' (without the national prefix): digits
    and separators only, at least 3 digits, not starting with the region's calling code or
    international prefix, and either no national prefix or a plain one ('0') that phonenumbers
    strips (the rest is a possible length of the region and not less plausible a number); the
    result has a possible length for the calling code. None means: ask phonenumbers (tests
    compare the two)."""
    if region is None or not _NATIONAL_NUMBER.fullmatch(value):
        return None
    rules = _region_rules(region)
    if rules is None:
        return None
    digits = value.translate(_DIGIT_SEPARATORS)
    if len(digits) < 3 or digits.startswith(rules.code):
        return None
    if rules.idd is not None and rules.idd.match(digits):
        return None
    national = digits
    if rules.prefix is not None and rules.prefix.match(digits):
        literal = rules.literal_prefix
        if not literal or not digits.startswith(literal):
            return None
        national = digits[len(literal) :]
        general = rules.general
        if (
            not national
            or national[0] == "0"
            or len(national) not in rules.lengths
            or general is None
            or (general.fullmatch(digits) and not general.fullmatch(national))
        ):
            return None
    main = _calling_code_rules(int(rules.code))
    if main is None or len(national) not in main[1]:
        return None
    return "+" + rules.code + national


def phone_normalise_slow(value: str, *, region: str | None = None) -> str:
    """phonenumbers' E.164 if the number parses and has a possible length, else the input."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return value
    if not phonenumbers.is_possible_number(number):
        return value
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_normalise(value: str, *, region: str | None = None) -> str:
    """E.164 where the number can be parsed (with the lead's country as the default region);
    otherwise the trimmed input, so nothing the operator gave is lost."""
    value = value.strip()
    if not value:
        return ""
    fast = _phone_fast(value) if value[0] == "+" else _phone_fast_national(value, region)
    if fast is not None:
        return fast
    key = (value, region)
    found = _phone_cache.get(key)
    if found is not None:
        return found
    result = phone_normalise_slow(value, region=region)
    if len(_phone_cache) >= _PHONE_CACHE_MAX:
        _phone_cache.clear()
    _phone_cache[key] = result
    return result


# --- LinkedIn ----------------------------------------------------------------------------------

_LINKEDIN_HOST = re.compile(r"^(?:[a-z]{2,3}\.|www\.|m\.)?linkedin\.com$")
# The usual shape, read without urlsplit: scheme, host, then the path up to ? or #.
_LINKEDIN_FAST = re.compile(
    r"(?:https?://)?(?:[a-z]{2,3}\.|www\.|m\.)?linkedin\.com(/[^?#\s:@]*)(?:[?#]\S*)?",
    re.IGNORECASE,
)


def linkedin_normalise(value: str) -> str:
    """https://www.linkedin.com/<path> in lower case, without query, fragment or trailing
    slash. A value that is not a LinkedIn URL is kept as given (trimmed)."""
    value = value.strip()
    if not value:
        return ""
    fast = _LINKEDIN_FAST.fullmatch(value)
    if fast:
        path = fast.group(1)
        path = (unquote(path) if "%" in path else path).rstrip("/").lower()
        return "https://www.linkedin.com" + path if path else value
    candidate = value if "://" in value else "https://" + value
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return value
    host = (parts.hostname or "").lower()
    path = unquote(parts.path).rstrip("/").lower()
    if not _LINKEDIN_HOST.match(host) or not path:
        return value
    return "https://www.linkedin.com" + path


# --- websites and domains ----------------------------------------------------------------------


# 'https://www.acme.example/about', 'acme.example': an http(s) scheme or none, an ASCII host
# without user, port or brackets, then nothing or a path, query or fragment.
_PLAIN_WEBSITE = re.compile(r"([Hh][Tt][Tt][Pp][Ss]?://)?([A-Za-z0-9.-]+)(?:[/?#][^\t\n\r]*)?")


@functools.lru_cache(maxsize=65536)
def domain_from_website(value: str) -> str:
    """The host of a website URL in lower case, without 'www.'; '' if there is none.

    Fast path: a plain URL's host is the text between the scheme and the first '/', '?' or
    '#', which is what urlsplit finds (tests compare the two)."""
    value = value.strip()
    if not value:
        return ""
    plain = _PLAIN_WEBSITE.fullmatch(value)
    if plain and (plain.group(1) or "://" not in value):
        return plain.group(2).lower().removeprefix("www.")
    return domain_from_website_slow(value)


def domain_from_website_slow(value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    candidate = value if "://" in value else "https://" + value
    try:
        host = (urlsplit(candidate).hostname or "").lower()
    except ValueError:
        return ""
    return host.removeprefix("www.")


def domain_normalise(value: str) -> str:
    value = value.strip().lower()
    if "/" in value or ":" in value:
        return domain_from_website(value)
    return value.removeprefix("www.").rstrip(".")


# --- numbers -----------------------------------------------------------------------------------

_SIZE = re.compile(r"(\d[\d,.\s]*)")


# Sizes, values and dates repeat a lot in real lists ("51-200"): cached, a bounded number each.
@functools.lru_cache(maxsize=4096)
def company_size_parse(value: str) -> int | None:
    """'51-200' -> 51, '1,001-5,000' -> 1001, '10000+' -> 10000, '11' -> 11, else None."""
    match = _SIZE.search(value)
    if not match:
        return None
    digits = re.sub(r"[,.\s]", "", match.group(1))
    return min(int(digits), 2_147_483_647) if digits else None


@functools.lru_cache(maxsize=4096)
def decimal_parse(value: str) -> Decimal | None:
    cleaned = re.sub(r"[^\d.\-]", "", value.replace(",", ""))
    if not cleaned:
        return None
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not number.is_finite() or abs(number) >= Decimal("1e10"):
        return None
    return number.quantize(Decimal("0.01"))


_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y")


@functools.lru_cache(maxsize=4096)
def datetime_parse(value: str) -> dt.datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
        for fmt in _DATE_FORMATS:
            try:
                parsed = dt.datetime.strptime(value, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


_CONSENT_YES = {"yes", "y", "true", "1", "consented", "consent", "opt-in", "opted in", "opt in"}
_CONSENT_NO = {
    "no",
    "n",
    "false",
    "0",
    "dnc",
    "do not contact",
    "opt-out",
    "opted out",
    "opt out",
    "unsubscribed",
}


def consent_parse(value: str) -> str:
    word = value.strip().lower()
    if word in _CONSENT_YES:
        return ConsentStatus.CONSENTED
    if word in _CONSENT_NO:
        return ConsentStatus.DNC
    return ConsentStatus.UNKNOWN


def truthy(value: str) -> bool:
    return value.strip().lower() in {"yes", "y", "true", "1", "x", "dnc"}


# --- countries and time zones ------------------------------------------------------------------

_COUNTRY_ALIASES = {
    "uk": "GB",
    "united kingdom": "GB",
    "great britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "usa": "US",
    "u.s.": "US",
    "u.s.a.": "US",
    "united states of america": "US",
    "deutschland": "DE",
    "south korea": "KR",
    "north korea": "KP",
    "the netherlands": "NL",
    "holland": "NL",
    "czechia": "CZ",
    "russian federation": "RU",
    "uae": "AE",
    "schweiz": "CH",
    "österreich": "AT",
}

# States and provinces that lie in a single time zone (split states such as Texas are absent).
_REGION_ZONES = {
    "US": {
        "America/New_York": "ct connecticut de delaware dc district of columbia ga georgia me maine "
        "md maryland ma massachusetts nh new hampshire nj new jersey ny new york nc north carolina "
        "oh ohio pa pennsylvania ri rhode island sc south carolina vt vermont va virginia "
        "wv west virginia",
        "America/Chicago": "al alabama ar arkansas il illinois ia iowa la louisiana mn minnesota "
        "ms mississippi mo missouri ok oklahoma wi wisconsin",
        "America/Denver": "co colorado mt montana nm new mexico ut utah wy wyoming",
        "America/Phoenix": "az arizona",
        "America/Los_Angeles": "ca california wa washington",
        "Pacific/Honolulu": "hi hawaii",
    },
    "CA": {
        "America/Edmonton": "ab alberta",
        "America/Winnipeg": "mb manitoba",
        "America/Halifax": "ns nova scotia pe prince edward island",
        "America/Moncton": "nb new brunswick",
        "America/Regina": "sk saskatchewan",
    },
    "AU": {
        "Australia/Melbourne": "vic victoria",
        "Australia/Brisbane": "qld queensland",
        "Australia/Adelaide": "sa south australia",
        "Australia/Perth": "wa western australia",
        "Australia/Hobart": "tas tasmania",
        "Australia/Sydney": "act australian capital territory",
        "Australia/Darwin": "nt northern territory",
    },
}
_MULTIWORD = re.compile(
    r"district of columbia|new hampshire|new jersey|new york|north carolina|rhode island|"
    r"south carolina|west virginia|new mexico|nova scotia|prince edward island|new brunswick|"
    r"south australia|western australia|australian capital territory|northern territory|\S+"
)


@functools.cache
def _region_table() -> dict[tuple[str, str], str]:
    table = {}
    for country, zones in _REGION_ZONES.items():
        for zone, names in zones.items():
            for name in _MULTIWORD.findall(names):
                table[(country, name)] = zone
    return table


def _tzdata_file(name: str) -> Path | None:
    for base in zoneinfo.TZPATH:
        path = Path(base) / name
        if path.is_file():
            return path
    return None


@functools.cache
def _country_tables() -> tuple[dict[str, str], dict[str, str]]:
    """(country name or code in lower case -> ISO code, ISO code -> its only time zone).

    Read from the system time zone database (iso3166.tab, zone.tab). A country is in the second
    table only if all its zones keep the same UTC offsets in January and July, so the zone
    inferred is right for every place in it. Without the files, nothing is inferred.
    """
    names: dict[str, str] = {}
    iso = _tzdata_file("iso3166.tab")
    if iso:
        for line in iso.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                code, _, name = line.partition("\t")
                names[code.lower()] = code
                names[name.strip().lower()] = code
                names[re.sub(r"\s*\(.*\)", "", name).strip().lower()] = code
    names.update({k: v for k, v in _COUNTRY_ALIASES.items() if k not in names})
    zones_by_country: dict[str, list[str]] = {}
    tab = _tzdata_file("zone.tab")
    if tab:
        for line in tab.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                fields = line.split("\t")
                zones_by_country.setdefault(fields[0], []).append(fields[2])
    single: dict[str, str] = {}
    for code, zones in zones_by_country.items():
        if len({_offsets(z) for z in zones}) == 1:
            single[code] = zones[0]
    return names, single


def _offsets(zone: str) -> tuple:
    tz = zoneinfo.ZoneInfo(zone)
    return tuple(dt.datetime(2025, m, 15, 12, tzinfo=tz).utcoffset() for m in (1, 7))


@functools.lru_cache(maxsize=4096)
def country_code_of(country: str) -> str | None:
    """ISO 3166 code of a country name or code, or None."""
    names, _ = _country_tables()
    return names.get(country.strip().lower())


@functools.lru_cache(maxsize=8192)
def timezone_infer(country: str, state: str = "") -> str:
    """The IANA zone of a country (or a state of a multi-zone country) when unambiguous."""
    code = country_code_of(country) if country else None
    if not code:
        return ""
    _, single = _country_tables()
    if code in single:
        return single[code]
    return _region_table().get((code, state.strip().lower()), "")


@functools.lru_cache(maxsize=1024)
def timezone_valid(name: str) -> str:
    """The zone name if it is a valid IANA zone, else ''."""
    name = name.strip()
    if not name or ("/" not in name and name != "UTC"):
        return ""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return ""
    return name
