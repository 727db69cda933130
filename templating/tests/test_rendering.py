"""Rendering and guardrails of templating, on plain context dicts (no database)."""

from __future__ import annotations

import pytest

from templating.guardrails import SUBJECT_MAX_CHARS, Compliance
from templating.rendering import render_message, required_variables, source_error

UNSUB = "https://aicmo.example/u/tok-123/"
ADDRESS = "Musterstrasse 1, 10115 Berlin, Germany"
COMPLIANT_FOOTER = (
    "\n\nMusterstrasse 1, 10115 Berlin, Germany\nUnsubscribe: {{ unsubscribe_url }}\n"
)


def ctx(**extra):
    base = {
        "first_name": "Ann",
        "company": "Acme",
        "lead": {"first_name": "Ann", "company": "Acme", "custom": {}},
        "venture": {"name": "Northwind", "postal_address": ADDRESS},
        "unsubscribe_url": UNSUB,
    }
    base.update(extra)
    return base


def render(
    subject="Hello {{ first_name }}",
    text="Hi {{ first_name }}, about {{ company }}.",
    html="",
    context=None,
    live=False,
    seed="seed-1",
):
    return render_message(
        subject=subject,
        body_text=text,
        body_html=html,
        context=ctx() if context is None else context,
        seed=seed,
        compliance=Compliance(unsubscribe_url=UNSUB, postal_address=ADDRESS),
        live=live,
    )


def codes(result):
    return [r.code for r in result.blocking_reasons]


def test_renders_subject_and_text_from_the_context():
    result = render()
    assert result.ok, result.reasons
    assert result.subject == "Hello Ann"
    assert result.text == "Hi Ann, about Acme."


def test_missing_variable_blocks_the_render_and_names_it():
    result = render(text="Hi {{ first_name }}, {{ icebreaker }}", context=ctx())
    assert not result.ok
    assert codes(result) == ["undefined_variable"]
    assert "'icebreaker' is undefined" in result.reasons[0].message
    assert result.reasons[0].part == "text"


def test_missing_attribute_blocks_too():
    result = render(text="Hi {{ lead.title }}")
    assert codes(result) == ["undefined_variable"]


def test_default_filter_is_the_fallback_for_a_missing_variable():
    context = ctx()
    del context["first_name"]
    result = render(
        subject="Hi {{ first_name | default('there') }}",
        text="Hello {{ lead.title | default('friend') }}",
        context=context,
    )
    assert result.ok, result.reasons
    assert result.subject == "Hi there"
    assert result.text == "Hello friend"


def test_if_on_a_missing_variable_is_an_error_but_is_defined_works():
    assert codes(render(text="{% if title %}x{% endif %}ok")) == ["undefined_variable"]
    result = render(text="{% if title is defined %}{{ title }}{% else %}ok{% endif %}")
    assert result.ok and result.text == "ok"


def test_choose_is_stable_for_a_recipient_and_varies_across_recipients():
    template = "{{ choose('Hi', 'Hello', 'Hey', 'Good day', key='greeting') }}"
    first = render(text=template, seed="person-a").text
    assert all(render(text=template, seed="person-a").text == first for _ in range(5))
    seen = {render(text=template, seed=f"person-{n}").text for n in range(40)}
    assert seen == {"Hi", "Hello", "Hey", "Good day"}


def test_choose_keys_vary_independently():
    template = "{{ choose('a', 'b', key='one') }}{{ choose('a', 'b', key='two') }}"
    outputs = {render(text=template, seed=f"p{n}").text for n in range(40)}
    assert {"ab", "ba"} <= outputs


def test_html_body_is_autoescaped_and_the_text_part_is_not():
    context = ctx(first_name="<script>alert(1)</script>")
    result = render(
        text="Hi {{ first_name }}",
        html="<p>Hi {{ first_name }}</p>" + COMPLIANT_FOOTER,
        context=context,
    )
    assert result.ok, result.reasons
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in result.html
    assert "<script>" not in result.html
    assert result.text == "Hi <script>alert(1)</script>"


def test_html_only_template_gets_an_automatic_text_part():
    html = (
        "<html><head><style>p {color: red}</style></head><body>"
        '<p>Hi {{ first_name }} &amp; team</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
        "<p>Musterstrasse 1<br>10115 Berlin, Germany</p></body></html>"
    )
    result = render(text="", html=html, live=True)
    assert result.ok, result.reasons
    assert result.text.startswith("Hi Ann & team\n")
    assert f"Unsubscribe ({UNSUB})" in result.text
    assert "color" not in result.text


def test_lead_data_is_never_compiled_as_template_code():
    result = render(text="Hi {{ first_name }}", context=ctx(first_name="{{ 7 * 7 }}"))
    assert "49" not in result.text
    assert result.text == "Hi {{ 7 * 7 }}"
    assert set(codes(result)) == {"leftover_syntax"}  # in the subject and the text


def test_required_variables_are_extracted_without_helpers_or_locals():
    sources = [
        "Hi {{ first_name | default('x') }} {{ choose('a', 'b') }}",
        "{% set greeting = 'Hi' %}{{ greeting }} {{ lead.company }} {{ icebreaker }}",
        "{% for x in range(2) %}{{ x }}{% endfor %}",
    ]
    assert required_variables(sources) == ["first_name", "icebreaker", "lead"]


def test_syntax_error_message_names_the_line():
    assert source_error("line one\n{{ first_name }\nthree", html=False, schema=None).startswith(
        "Line 2:"
    )


# --- Guardrails: one test per reason -------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Hi {{ '{{' }} first_name }}", "leftover_syntax"),
        ("Hi {{ '{%' }} if %}", "leftover_syntax"),
        ("Hi {{ '{#' }} note", "leftover_syntax"),
        ("Hi Ann, TODO write the pitch", "todo"),
        ("Hi Ann, we launch TBD", "tbd"),
        ("Hi Ann, [PLACEHOLDER] is great", "placeholder"),
        ("Hi Ann, [insert case study]", "placeholder"),
        ("Hi Ann, our price is <VALUE>", "angle_token"),
        ("Hi [First Name], how are you", "bracket_token"),
        ("Hi {first_name}, how are you", "brace_token"),
        ("Lorem ipsum dolor sit amet", "lorem_ipsum"),
    ],
)
def test_each_leftover_marker_blocks_with_its_reason(text, code):
    result = render(text=text)
    assert not result.ok
    assert code in codes(result)
    reason = next(r for r in result.reasons if r.code == code)
    start, end = reason.span
    assert reason.part == "text"
    assert result.text[start:end].strip()


def test_markers_in_lead_data_block_too():
    result = render(text="Hi {{ first_name }}", context=ctx(first_name="[First Name]"))
    assert set(codes(result)) == {"bracket_token"}


def test_ordinary_text_is_not_mistaken_for_a_placeholder():
    text = "Hi Ann, see [our guide](https://x.example) and email sam <sam@x.example>. Todoist fans welcome."
    assert render(text=text).ok


def test_empty_subject_blocks():
    assert codes(render(subject="{{ '' }}")) == ["empty_subject"]


def test_empty_body_blocks():
    assert "empty_body" in codes(render(text="  {{ '' }}  "))


def test_subject_over_the_limit_blocks():
    result = render(subject="x" * (SUBJECT_MAX_CHARS + 1))
    assert codes(result) == ["subject_too_long"]
    assert render(subject="x" * SUBJECT_MAX_CHARS).ok


def test_line_break_in_the_subject_blocks():
    result = render(
        subject="Hi {{ first_name }}", context=ctx(first_name="Ann\r\nBcc: x@evil.example")
    )
    assert "subject_multiline" in codes(result)


def test_live_email_without_unsubscribe_link_blocks():
    result = render(text="Hi Ann" + "\n\nMusterstrasse 1, 10115 Berlin, Germany", live=True)
    assert codes(result) == ["missing_unsubscribe"]


def test_live_email_without_postal_address_blocks():
    result = render(text="Hi Ann\n\nUnsubscribe: {{ unsubscribe_url }}", live=True)
    assert codes(result) == ["missing_postal_address"]


def test_postal_address_over_several_lines_counts():
    text = "Hi\n\nMusterstrasse 1\n10115 Berlin\nGermany\nUnsubscribe: {{ unsubscribe_url }}"
    assert render(text=text, live=True).ok


def test_compliance_items_are_reported_but_do_not_block_in_proof_mode():
    result = render(text="Hi Ann", live=False)
    assert result.ok
    assert {r.code for r in result.reasons} == {"missing_unsubscribe", "missing_postal_address"}
    assert not any(r.blocking for r in result.reasons)


def test_compliance_checks_the_html_part_as_well():
    html = "<p>Hi</p><p>Musterstrasse 1, 10115 Berlin, Germany</p>"
    result = render(text="Hi" + COMPLIANT_FOOTER, html=html, live=True)
    assert [(r.code, r.part) for r in result.blocking_reasons] == [("missing_unsubscribe", "html")]


def test_venture_without_postal_address_blocks_live_email():
    result = render_message(
        subject="Hi",
        body_text="Hi\nUnsubscribe: {{ unsubscribe_url }}",
        context=ctx(),
        seed="s",
        compliance=Compliance(unsubscribe_url=UNSUB, postal_address=""),
        live=True,
    )
    assert codes(result) == ["missing_postal_address"]
    assert "no postal address" in result.reasons[0].message
