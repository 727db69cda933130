"""Text PostgreSQL cannot store (NUL, lone surrogates) is refused at every way in, by name,
identically on SQLite and PostgreSQL: the JSON API, the capture form and its link, campaign
files (in process and through `manage.py campaign load`), template sources and renders."""

from __future__ import annotations

import json
import sqlite3
import tomllib
from pathlib import Path
from urllib.parse import quote

import pytest
import tomli_w
from django.urls import reverse

from leads.api import MAX_JSON_DEPTH
from leads.models import ImportBatch, Lead
from leads.tests.capture_form import FORM
from leads.views import capture_url
from templating.models import MessageTemplate
from templating.tests.campaign_files import BASE, OPENER
from templating.tests.template_forms import form_data
from tests.factories import MessageTemplateFactory
from tests.proc import clean_env, manage
from ventures.campaign_code import CampaignCodeError, campaign_load
from ventures.models import Campaign, Venture
from ventures.services import venture_api_token_create
from ventures.text import data_text_problem, text_problem

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http", "fresh_rate_limit")]

BAD = {"NUL": "\x00", "surrogate": "\ud800"}
REASON = {"NUL": "a NUL character (U+0000)", "surrogate": "a lone surrogate (U+D800)"}


# --- The rule ---------------------------------------------------------------------------------
def test_the_rule_names_the_character_and_where_it_is():
    assert text_problem("Ann\x00") == "contains a NUL character (U+0000) at position 4"
    assert text_problem("\udfffx") == "contains a lone surrogate (U+DFFF) at position 1"
    assert text_problem("Zoë 😀 \ufffd") is None  # real characters, pairs and U+FFFD are fine
    assert data_text_problem({"a": [1, {"b": "x\ud801"}]})[0] == ("a", 1, "b")
    path, problem = data_text_problem({"leads": [{"b\x00": "x"}]})
    assert path == ("leads", 0) and problem.startswith("the key 'b\\x00' contains a NUL")


# --- The JSON API -----------------------------------------------------------------------------
@pytest.fixture
def token(campaign):
    return venture_api_token_create(venture=campaign.venture, name="site", actor="test")[1]


def api(client, campaign, body: str | bytes, token: str):
    return client.post(
        reverse("leads:api", args=[campaign.slug]),
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def nothing_imported() -> bool:
    return not ImportBatch.objects.exists() and not Lead.objects.exists()


LEAD = {
    "email": "ann@acme.example",
    "first_name": "Ann",
    "last_name": "Lee",
    "company": "Acme",
    "title": "VP",
    "phone": "+49 30 1234567",
    "utm_source": "site",
    "Icebreaker": "Loved your post",
}


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("field", LEAD)
@pytest.mark.parametrize("where", ["value", "key"])
def test_api_refuses_unstorable_text_in_every_key_and_value(
    client, campaign, token, kind, field, where
):
    lead = dict(LEAD)
    if where == "value":
        lead[field] = lead[field][:2] + BAD[kind] + lead[field][2:]
    else:
        lead[field[:2] + BAD[kind] + field[2:]] = lead.pop(field)
    body = json.dumps({"leads": [{"email": "bob@beta.example"}, lead]})  # escapes: \u0000, \ud800

    response = api(client, campaign, body, token)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error.startswith("Lead 2: ") and REASON[kind] in error and "cannot be stored" in error
    assert nothing_imported()


@pytest.mark.parametrize("kind", BAD)
def test_api_refuses_unstorable_text_in_the_source_and_as_raw_bytes(client, campaign, token, kind):
    body = json.dumps({"source": f"web{BAD[kind]}", "leads": [LEAD]})
    response = api(client, campaign, body, token)
    assert response.status_code == 400 and REASON[kind] in response.json()["error"]
    # The same character written as raw (invalid, CESU-style) UTF-8 bytes, not as an escape.
    raw = json.dumps({"leads": [LEAD]}).replace("Ann", "A\\u0000").encode()
    if kind == "surrogate":
        raw = json.dumps({"leads": [LEAD]}, ensure_ascii=False).encode()
        raw = raw.replace(b"Ann", b"A\xed\xa0\x80")
    response = api(client, campaign, raw, token)
    assert response.status_code == 400 and REASON[kind] in response.json()["error"]
    assert nothing_imported()


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        "[" * 100_000,  # never closed
        '{"leads": ' + "[" * 5_000 + "{}" + "]" * 5_000 + "}",
        '{"leads": [{"email": "a@b.example", "x": ' + '{"y": ' * 3_000 + "1" + "}" * 3_000 + "}]}",
        "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
    ],
    ids=["balanced", "unclosed", "in-leads", "in-a-value", "one-past-the-limit"],
)
def test_api_answers_400_with_a_json_error_to_deep_nesting(client, campaign, token, body):
    response = api(client, campaign, body, token)
    assert response.status_code == 400
    assert "nested" in response.json()["error"]
    assert nothing_imported()


def test_api_nesting_within_the_limit_is_judged_by_shape_not_depth(client, campaign, token):
    body = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    response = api(client, campaign, body, token)
    assert response.status_code == 400 and "nested" not in response.json()["error"]
    # Brackets inside strings are text, not nesting.
    lead = {**LEAD, "Icebreaker": "[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{"}
    assert api(client, campaign, json.dumps([lead]), token).status_code == 201


def test_api_answers_413_with_a_json_error_to_a_huge_body(client, campaign, token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000_000
    body = json.dumps([{"email": f"p{n}@example.com", "note": "x" * 1_000} for n in range(1_500)])
    response = api(client, campaign, body, token)
    assert response.status_code == 413 and "too large" in response.json()["error"]
    assert nothing_imported()


# --- The capture form and its link ------------------------------------------------------------
@pytest.mark.parametrize("field", ["email", "first_name", "last_name", "company", "title"])
def test_capture_form_refuses_a_nul_in_every_field(client, campaign, field):
    response = client.post(capture_url(campaign), {**FORM, field: "Vi\x00c"})
    assert response.status_code == 400
    assert "Null characters are not allowed" in response.content.decode()
    assert nothing_imported()


@pytest.mark.parametrize("key", ["utm_source", "utm_medium", "utm_campaign", "utm_content"])
def test_capture_form_refuses_a_nul_in_every_utm_parameter_of_the_link(client, campaign, key):
    response = client.post(f"{capture_url(campaign)}?{key}=li%00nk", FORM)
    assert response.status_code == 400
    assert response.content.decode() == (
        f"Bad request: the query parameter '{key}' contains a NUL character (U+0000)"
        " at position 3, which cannot be stored."
    )
    assert nothing_imported()


@pytest.mark.parametrize(
    "query",
    ["status=%00", "q=a%00", "campaign__id__exact=1%00", "st%00atus=new", "o=%00", "p=%00"],
)
def test_admin_changelist_filters_and_searches_refuse_a_nul_with_400(client, administrator, query):
    client.force_login(administrator)
    response = client.get(f"/admin/leads/lead/?{query}")
    assert response.status_code == 400
    assert "NUL character (U+0000)" in response.content.decode()


def test_api_query_parameters_with_a_nul_get_a_json_400(client, campaign, token):
    url = reverse("leads:api", args=[campaign.slug]) + "?source=%00"
    response = client.post(
        url,
        json.dumps([LEAD]),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 400 and "NUL character" in response.json()["error"]
    assert nothing_imported()


def test_capture_form_stores_undecodable_surrogate_bytes_as_replacement_characters(
    client, campaign
):
    # A browser cannot send a lone surrogate: its UTF-8 bytes are invalid and Django decodes
    # them as U+FFFD, which can be stored. No 500, and what is stored passes the rule.
    body = "&".join(f"{k}={quote(v)}" for k, v in FORM.items() if k != "first_name")
    body += "&first_name=V%ED%A0%80c"
    url = f"{capture_url(campaign)}?utm_source=a%ED%A0%80"
    response = client.post(url, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    lead = Lead.objects.get()
    assert text_problem(lead.first_name) is None and "\ufffd" in lead.first_name
    assert text_problem(lead.utm_source) is None


# --- Campaign files ---------------------------------------------------------------------------
FILE = BASE + OPENER


def _string_paths(value, path=()):
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _string_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_paths(item, (*path, index))


def _with(data, path, char):
    data = json.loads(json.dumps(data))
    owner = data
    for part in path[:-1]:
        owner = owner[part]
    owner[path[-1]] = owner[path[-1]][:1] + char + owner[path[-1]][1:]
    return data


def rows_written() -> int:
    return Venture.objects.count() + Campaign.objects.count() + MessageTemplate.objects.count()


@pytest.mark.parametrize("path", list(_string_paths(tomllib.loads(FILE))), ids=str)
def test_campaign_file_with_a_nul_escape_in_any_text_key_writes_nothing(tmp_path, path):
    text = tomli_w.dumps(_with(tomllib.loads(FILE), path, "\x00"))
    assert "\\u0000" in text  # the file holds the escape, as an operator would write it
    file = tmp_path / "c.toml"
    file.write_text(text, encoding="utf-8")

    with pytest.raises(CampaignCodeError) as err:
        campaign_load(path=file, actor="cli:test")

    message = str(err.value)
    dotted = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
    assert dotted.replace(".[", "[") in message and "NUL character" in message
    assert "\n" not in message and "\x00" not in message
    assert rows_written() == 0


def test_campaign_file_with_a_nul_in_a_key_name_writes_nothing(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text(FILE.replace('name = "Opener"', '"na\\u0000me" = "Opener"'), encoding="utf-8")
    with pytest.raises(CampaignCodeError, match=r"the key 'na\\x00me' contains a NUL"):
        campaign_load(path=file, actor="cli:test")
    assert rows_written() == 0


def _count_rows(url: str) -> int:
    if url.startswith("postgres"):
        return rows_written()
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        tables = ("ventures_venture", "ventures_campaign", "templating_messagetemplate")
        return sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables)  # noqa: S608


@pytest.mark.django_db(transaction=True)
def test_campaign_load_command_refuses_nul_and_surrogate_escapes_in_one_line(
    cli_database_url, tmp_path
):
    url = cli_database_url
    env = clean_env(DATABASE_URL=url)
    files = {
        "body NUL": FILE.replace("Hello {{", "Hello \\u0000{{"),
        "name NUL": FILE.replace('name = "Acme Pipelines"', 'name = "Acme\\u0000"'),
        "subject surrogate": FILE.replace('subject = "Hi', 'subject = "\\ud800Hi'),
        "slug surrogate": FILE.replace('slug = "acme-q3"', 'slug = "acme\\udfff"'),
    }
    for label, text in files.items():
        file = tmp_path / "campaign.toml"
        file.write_text(text, encoding="utf-8")

        run = manage("campaign", "load", str(file), env=env)

        assert run.returncode != 0, (label, run)
        assert run.stdout == "", label
        assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, (label, run.stderr)
        assert run.stderr.startswith(f"CommandError: {file}:"), run.stderr
        reason = "NUL character" if "NUL" in label else "Unicode scalar value"
        assert reason in run.stderr, (label, run.stderr)
        assert _count_rows(url) == 0, label


# --- Template sources and renders -------------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "subject", "body_text", "body_html"])
def test_template_admin_form_refuses_a_nul_in_every_text_field(op_client, campaign, field):
    value = form_data(campaign)[field] or "<p>x</p>"
    response = op_client.post(
        reverse("admin:templating_messagetemplate_add"),
        form_data(campaign, **{field: value + "\x00"}),
    )
    assert response.status_code == 200
    assert "Null characters are not allowed" in response.content.decode()
    assert not MessageTemplate.objects.exists()


@pytest.mark.parametrize("kind", BAD)
def test_a_template_source_with_unstorable_text_is_refused_by_its_validation(campaign, kind):
    from django.core.exceptions import ValidationError

    body = f"Hello {BAD[kind]}{{{{ unsubscribe_url }}}}"
    template = MessageTemplate(venture=campaign.venture, campaign=campaign, subject="Hi")
    template.name, template.slug, template.body_text = "T", "t", body
    with pytest.raises(ValidationError) as err:
        template.full_clean()
    assert REASON[kind] in str(err.value)


@pytest.mark.parametrize("literal", ["'\\x00'", "'\\ud800'", "'\\0'"])
def test_preview_of_a_template_that_prints_unstorable_text_is_blocked_by_name(
    op_client, campaign, literal
):
    template = MessageTemplateFactory(
        campaign=campaign,
        subject="Hi",
        body_text=f"Hello {{{{ {literal} }}}} {{{{ unsubscribe_url }}}}\n{{{{ venture.postal_address }}}}",
    )
    response = op_client.get(
        reverse("admin:templating_messagetemplate_preview", args=[template.pk]),
        {"campaign": campaign.pk, "recipient": "sample"},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Blocked: this message would not be sent." in page
    assert "cannot be stored" in page


# --- Files ------------------------------------------------------------------------------------
def _xlsx_with_cell_xml(path: Path, cell_xml: bytes) -> Path:
    """An XLSX whose first_name cell holds `cell_xml` as written in the sheet's XML."""
    import zipfile

    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["email", "first_name"])
    book.active.append(["ann@acme.example", "CELLTEXT"])
    plain = path.with_suffix(".plain.xlsx")
    book.save(plain)
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item.filename).replace(b"CELLTEXT", cell_xml))
    return path


@pytest.mark.django_db(transaction=True)
def test_leads_import_refuses_an_xlsx_cell_with_a_nul_or_surrogate_in_one_line(
    cli_database_url, tmp_path
):
    # CSV files already refuse NUL bytes and invalid UTF-8 (leads.parsing); in XLSX the XML
    # parser refuses these characters, and that refusal is a one-line reason, not a traceback.
    url = cli_database_url
    env = clean_env(DATABASE_URL=url)
    demo = Path(__file__).resolve().parent.parent / "docs" / "examples" / "demo-campaign.toml"
    assert manage("campaign", "load", str(demo), env=env).returncode == 0
    for name, cell in {"nul": b"A&#0;n", "surrogate": b"A&#xD800;n", "raw": b"A\x00n"}.items():
        file = _xlsx_with_cell_xml(tmp_path / f"{name}.xlsx", cell)

        run = manage("leads", "import", "northwind-pipeline-q3", str(file), env=env)

        assert run.returncode != 0, (name, run)
        assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1, run.stderr
        assert "The XLSX file is damaged" in run.stderr, run.stderr
        assert _count_leads(url) == 0, name


def _count_leads(url: str) -> int:
    if url.startswith("postgres"):
        return Lead.objects.count()
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        return db.execute("SELECT COUNT(*) FROM leads_lead").fetchone()[0]
