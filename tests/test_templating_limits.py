"""A render stays inside its size and output limits whatever the template builds.

The corpus is generated here: nested lists and dicts, repeated strings, ranges, joins,
concatenations, format strings, filters, loops and captured blocks, each scaled past the limits.
Every one must end as a named blocked result with no output, in the renderer and through the
real preview view. Nothing here asserts on wall time: the bounds are counted sizes."""

from __future__ import annotations

import random

import pytest
from django.urls import reverse

from templating.rendering import render_message
from templating.sandbox import (
    MAX_OUTPUT_CHARS,
    MAX_PRINTED_CHARS,
    MAX_VALUE_CHARS,
    RenderLimitError,
    measured_size,
)
from tests.factories import MessageTemplateFactory

BIG = "'x' * 99999"  # one string just under the value limit


def _nested(depth: int, width: int) -> str:
    expr = "1"
    for _ in range(depth):
        expr = f"[{expr}] * {width}"
    return f"({expr})"


def corpus() -> dict[str, tuple[str, str]]:
    """name -> (template, expected reason code)."""
    limit = "resource_limit"
    cases: dict[str, tuple[str, str]] = {"reported": ("{{ [[[1]*1000]*1000]*300 }}", limit)}
    for depth in (2, 3, 4):  # depth lists of width items: 4 x the value limit in all
        width = int((MAX_VALUE_CHARS * 4) ** (1 / depth)) + 2
        cases[f"nested lists depth {depth}"] = (f"{{{{ {_nested(depth, width)} }}}}", limit)
        cases[f"nested dict depth {depth}"] = (
            f"{{{{ {{'a': {_nested(depth, width)}}} }}}}",
            limit,
        )
    for count in (3, 50, 500):
        refs = ", ".join(["a"] * count)
        cases[f"literal of {count} big refs"] = (f"{{% set a = {BIG} %}}{{{{ [{refs}] }}}}", limit)
    cases |= {
        "string times string length": ("{{ ('x' * 1000) * 1000 }}", limit),
        "repeated big string": (f"{{{{ ({BIG}) * 2 }}}}", limit),
        "ranges in a list": ("{{ [range(1000)] * 100 }}", limit),
        "range join with a big separator": (f"{{{{ range(1000) | join({BIG}) }}}}", limit),
        "join of nested lists": ("{{ ([[1] * 100] * 999) | join(',') }}", limit),
        "string of nested lists": ("{{ ([[1] * 300] * 300) | string }}", limit),
        "replace growth": (f"{{{{ ({BIG}) | replace('x', 'yy') }}}}", limit),
        "upper of nested": ("{% set a = [[1]*300]*300 %}{{ a|upper }}", limit),
        "concatenation": (f"{{{{ ({BIG}) ~ ({BIG}) }}}}", limit),
        "concatenation of a nested list": ("{% set a = [[1]*300]*300 %}{{ 'a' ~ a }}", limit),
        "list addition": ("{% set a = [[1]*300]*300 %}{{ a + a }}", limit),
        "choose of nested": ("{{ choose([[1]*1000]*1000) }}", limit),
        "printing in a loop": (
            f"{{% set a = {BIG} %}}{{% for i in range(1000) %}}{{{{ a }}}}{{% endfor %}}",
            limit,
        ),
        "captured in a set block": (
            f"{{% set a = {BIG} %}}{{% set b %}}{{% for i in range(1000) %}}{{{{ a }}}}"
            "{% endfor %}{% endset %}done",
            limit,
        ),
        "literal text in nested loops": (
            "{% set b %}{% for i in range(100) %}{% for j in range(100) %}"
            + "y" * 5_000
            + "{% endfor %}{% endfor %}{% endset %}done",
            limit,
        ),
        "filter block": (
            f"{{% filter upper %}}{{% for i in range(1000) %}}{{{{ {BIG} }}}}{{% endfor %}}"
            "{% endfilter %}",
            limit,
        ),
        "power": ("{{ 9 ** 99999 }}", limit),
        "big product": ("{{ (9 ** 1000) * (9 ** 1000) }}", limit),
        "percent format": ("{{ '%0999999999d' % 1 }}", "security_violation"),
        "str.format": ("{{ '{:>999999999}'.format(1) }}", "rule_violation"),
    }
    for name in ("center", "indent", "wordwrap", "batch", "list", "tojson", "pprint", "format"):
        cases[f"filter {name}"] = (
            f"{{{{ [[1]*1000]*1000 | {name}(999999999) }}}}",
            "rule_violation",
        )
    return cases


CORPUS = corpus()


def render(source: str):
    return render_message(
        subject="Hi", body_text=source, context={"first_name": "Ann"}, seed="lead-1"
    )


@pytest.mark.parametrize("name", list(CORPUS))
def test_every_template_of_the_corpus_is_blocked_by_name_with_no_output(name):
    source, code = CORPUS[name]

    result = render(source)

    assert not result.ok
    assert [r.code for r in result.blocking_reasons] == [code], result.reasons
    assert result.blocking_reasons[0].part == "text"
    assert len(result.text) == 0 and len(result.html) == 0


def test_what_stays_inside_the_limits_still_renders():
    assert render(f"{{{{ {BIG} }}}}").text == "x" * 99_999
    assert render("{{ [[1] * 10] * 10 }}").text == str([[1] * 10] * 10)
    assert render("{{ range(5) | join(', ') }}").text == "0, 1, 2, 3, 4"
    looped = render("{% for i in range(3) %}{{ 'ab' * 2 }}{% endfor %}")
    assert looped.text == "abab" * 3


def test_the_print_budget_counts_text_captured_in_blocks_as_well():
    # Each captured chunk is small; only the sum over the loop passes the budget.
    chunk = MAX_PRINTED_CHARS // 50
    source = f"{{% set b %}}{{% for i in range(60) %}}{{{{ 'y' * {chunk} }}}}{{% endfor %}}{{% endset %}}ok"
    result = render(source)
    assert result.reason_codes() == ["resource_limit"]
    assert "printed text" in result.blocking_reasons[0].message


def _random_data(rng: random.Random, depth: int = 0):
    kind = rng.choice(
        ["int", "str", "float", "bool", "none"] + ["list", "tuple", "dict"] * (depth < 4)
    )
    if kind == "int":
        return rng.choice([0, 7, -123456789, 2**200])
    if kind == "str":
        return "".join(rng.choice("abc xyz") for _ in range(rng.randrange(20)))
    if kind == "float":
        return rng.choice([0.1, -1.2345678901234567e-308, 1e300])
    if kind in ("bool", "none"):
        return rng.choice([True, False, None])
    items = [_random_data(rng, depth + 1) for _ in range(rng.randrange(6))]
    if kind == "dict":
        return {f"k{n}": item for n, item in enumerate(items)}
    return items if kind == "list" else tuple(items)


def test_measured_size_is_never_below_the_text_it_would_print():
    rng = random.Random(10)  # noqa: S311 - reproducible test data, not secrets
    for _ in range(500):
        value = _random_data(rng)
        assert measured_size(value, 10**9, "v") >= len(str(value)), value


def test_measuring_stops_at_its_limit_without_walking_the_whole_value():
    shared = [[1] * 1000] * 1000  # a million items behind a thousand references
    with pytest.raises(RenderLimitError, match="longer than 1,000 characters"):
        measured_size(shared, 1_000, "the value")
    assert measured_size("x" * 10, 10, "s") == 10
    with pytest.raises(RenderLimitError):
        measured_size("x" * 11, 10, "s")


@pytest.mark.django_db
def test_the_preview_view_shows_each_corpus_template_blocked_never_a_500(
    client, operator, campaign, settings
):
    settings.SECURE_SSL_REDIRECT = False
    client.force_login(operator)
    for name, (source, code) in CORPUS.items():
        template = MessageTemplateFactory(campaign=campaign, subject="Hi", body_text="Hi")
        # Saved as a version the way an old template would be: some of these fail the
        # save-time rules, and the render must still refuse them by name.
        type(template).objects.filter(pk=template.pk).update(body_text=source)
        template.refresh_from_db()
        response = client.get(
            reverse("admin:templating_messagetemplate_preview", args=[template.pk]),
            {"campaign": campaign.pk, "recipient": "sample"},
        )
        assert response.status_code == 200, name
        page = response.content.decode()
        assert "Blocked: this message would not be sent." in page, name
        assert f"{code}" in page, name
        assert len(page) < MAX_OUTPUT_CHARS, name
