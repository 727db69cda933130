"""Server-side template injection corpus: in templates and in lead data, none escapes the
sandbox, none hangs (each stops with a bounded-resource error), each gives a clear reason."""

from __future__ import annotations

import pytest

from templating.rendering import render_message, source_error

ERROR_CODES = {
    "syntax_error",
    "rule_violation",
    "security_violation",
    "undefined_variable",
    "resource_limit",
    "render_error",
}
CONTEXT = {
    "first_name": "Ann",
    "items": ["a", "b"],
    "lead": {"first_name": "Ann", "custom": {"icebreaker": "hi"}},
}

# Refused when the template is saved (and again at render time).
STATIC_PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ lead.__class__ }}",
    "{{ first_name.__class__.__init__.__globals__ }}",
    "{{ self.__init__.__globals__.__builtins__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ ''|attr('__class__') }}",
    "{{ first_name|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ lead['__class__'] }}",
    "{{ lead.custom.__class__ }}",
    "{{ '{0.__class__}'.format(first_name) }}",
    "{{ first_name.format_map(lead) }}",
    "{{ first_name.split.__self__ }}",
    "{{ first_name.upper.__call__() }}",
    "{{ choose.__globals__ }}",
    "{{ range.__closure__ }}",
    "{{ (1).bit_length() }}",
    "{{ items.append(1) }}",
    "{{ lead.update(a=1) }}",
    "{{ lipsum(10**9) }}",
    "{{ namespace(x=1) }}",
    "{{ first_name|center(10**9) }}",
    "{{ first_name|format(1) }}",
    "{{ 5|round(-10**9) }}",
    "{{ 1.5|round(10**9, 'ceil') }}",
    "{{ ('x' * 99999)|wordwrap(1, wrapstring='y' * 99999) }}",
    "{{ first_name|indent(10**9) }}",
    "{{ first_name|safe }}",
    "{{ items|map(attribute='__class__')|list }}",
    "{{ lead|pprint }}",
    "{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}",
    "{% for x in items recursive %}{{ loop(items) }}{% endfor %}",
    "{% include '/etc/passwd' %}",
    "{% extends 'base.html' %}",
    "{% import 'x.html' as x %}",
    "{% from 'x.html' import y %}",
    "{% autoescape false %}{{ first_name }}{% endautoescape %}",
    "{% block b %}x{% endblock %}",
    "{% call choose() %}x{% endcall %}",
    "{{ _private }}",
]

# Pass the static rules; stopped while rendering by the sandbox or the resource bounds.
RUNTIME_PAYLOADS = [
    ("{% set k = '__cla' ~ 'ss__' %}{{ lead[k] }}", "security_violation"),
    ("{% set k = '__glo' ~ 'bals__' %}{{ first_name[k] }}", "security_violation"),
    ("{{ '%s and %s' % (first_name, first_name) }}", "security_violation"),
    ("{{ '%0999999999d' % 1 }}", "security_violation"),
    ("{{ range(10**9)|length }}", "resource_limit"),
    ("{{ range(1001)|length }}", "resource_limit"),
    ("{{ 9 ** (9 ** 9) }}", "resource_limit"),
    ("{{ 2 ** 100000 }}", "resource_limit"),
    ("{{ (10 ** 1000) * (10 ** 1000) }}", "resource_limit"),
    ("{{ 'x' * 10**9 }}", "resource_limit"),
    ("{{ [1, 2] * 10**9 }}", "resource_limit"),
    ("{{ 10**9 * 'x' }}", "resource_limit"),
    ("{{ 'x' * 99999 + 'y' * 99999 }}", "resource_limit"),
    ("{% set a = 'x' * 90000 %}{{ a ~ a }}", "resource_limit"),
    ("{% set a = 'x' * 60000 %}{{ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a }}", "resource_limit"),
    ("{{ first_name|replace('', 'x' * 50000) }}", "resource_limit"),
    ("{{ range(1000)|join(',' * 200) }}", "resource_limit"),
    ("{{ range(1000)|join('y' * 99999) }}", "resource_limit"),
    ("{{ ('x' * 99999)|join('y' * 99999) }}", "resource_limit"),
    ("{{ ('x ' * 50000).split()|reverse|join('y' * 99999) }}", "resource_limit"),
    (
        "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
        "resource_limit",
    ),
    (
        "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "resource_limit",
    ),
    ("{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}", "resource_limit"),
    (
        "{% for c in 'x' * 99999 %}{% for d in 'y' * 99999 %}{% endfor %}{% endfor %}",
        "resource_limit",
    ),
    ("{{ config }}", "undefined_variable"),
    ("{{ request.environ }}", "undefined_variable"),
    ("{{ 1 / 0 }}", "render_error"),
    ("{{ 9.0 ** (9 ** 9) }}", "render_error"),
]


def render(text, context=None):
    return render_message(
        subject="Hello", body_text=text, context=context or dict(CONTEXT), seed="s"
    )


def assert_refused(result):
    assert not result.ok
    assert result.text == ""
    assert len(result.reasons) == 1
    reason = result.reasons[0]
    assert reason.code in ERROR_CODES
    assert reason.message and "Traceback" not in reason.message
    return reason


@pytest.mark.parametrize("payload", STATIC_PAYLOADS)
def test_template_payload_is_refused_at_save(payload):
    message = source_error(payload, html=False, schema=None)
    assert message is not None
    assert message.startswith("Line 1:")


@pytest.mark.parametrize("payload", STATIC_PAYLOADS)
def test_template_payload_does_not_render(payload):
    reason = assert_refused(render(payload))
    assert reason.code in {"rule_violation", "syntax_error"}


@pytest.mark.parametrize(("payload", "code"), RUNTIME_PAYLOADS)
def test_template_payload_stops_with_a_clear_reason(payload, code):
    assert source_error(payload, html=False, schema=None) is None
    reason = assert_refused(render(payload))
    assert reason.code == code, reason


def test_html_part_payloads_are_refused_as_well():
    result = render_message(
        subject="Hi",
        body_text="",
        body_html="<p>{{ ''.__class__ }}</p>",
        context=dict(CONTEXT),
        seed="s",
    )
    assert [(r.code, r.part) for r in result.reasons] == [("rule_violation", "html")]


LEAD_FIELD_PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{{ 9 ** 9 ** 9 }}",
    "{{ config.items() }}",
    "{% include '/etc/passwd' %}",
    "{{ '{0.__class__}'.format(1) }}",
    "{# comment #}",
]


@pytest.mark.parametrize("payload", LEAD_FIELD_PAYLOADS)
def test_lead_field_payload_is_printed_as_data_and_blocks_the_send(payload):
    context = dict(CONTEXT, first_name=payload, lead={"first_name": payload, "custom": {}})
    result = render("Hi {{ first_name }} / {{ lead.first_name }}", context)
    assert result.text == f"Hi {payload} / {payload}"
    assert not result.ok
    assert {r.code for r in result.blocking_reasons} == {"leftover_syntax"}


@pytest.mark.parametrize("payload", ["${7*7}", "#{7*7}", "<%= 7*7 %>", "{7*7}", "*{7*7}", "@(7*7)"])
def test_other_engines_syntax_in_lead_data_is_inert(payload):
    result = render("Hi {{ first_name }}", dict(CONTEXT, first_name=payload))
    assert result.text == f"Hi {payload}"
    assert "49" not in result.text


def test_huge_lead_field_stops_at_the_output_bound():
    reason = assert_refused(
        render("Hi {{ first_name }}", dict(CONTEXT, first_name="x" * 10_000_000))
    )
    assert reason.code == "resource_limit"


def test_lead_field_objects_are_reduced_to_plain_strings():
    class Sneaky:
        secret = "s3cret"

        def __str__(self):
            return "Sneaky"

    result = render("{{ first_name }} {{ first_name.secret }}", dict(CONTEXT, first_name=Sneaky()))
    assert [r.code for r in result.reasons] == ["security_violation"]
    assert render("{{ first_name }}", dict(CONTEXT, first_name=Sneaky())).text == "Sneaky"


def test_lead_field_named_like_a_dict_method_is_data():
    context = dict(CONTEXT, lead={"items": "eleven items", "keys": "three keys", "custom": {}})
    result = render("{{ lead.items }} / {{ lead.keys }}", context)
    assert result.text == "eleven items / three keys"


def test_absurdly_nested_template_is_refused_not_crashed():
    payload = "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"
    assert (
        source_error(payload, html=False, schema=None)
        == "The template is nested too deeply to read."
    )
    assert assert_refused(render(payload)).code == "render_error"


def test_oversized_template_is_refused():
    payload = "x" * 50_001
    assert "longer than 50,000 characters" in source_error(payload, html=False, schema=None)


def test_huge_number_literal_is_refused_not_crashed():
    payload = "{{ " + "9" * 5000 + " }}"
    assert source_error(payload, html=False, schema=None).startswith("The template cannot be read:")
    assert assert_refused(render(payload)).code == "render_error"
