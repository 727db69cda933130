"""Speed work on the import must not change what it stores.

The snapshot in data/golden_import.json was taken from the import as it was before its
per-row code was optimised (commit message of the snapshot says which). It holds, for every
sample in ../shared/data/ and a generated messy list, the batch counts, the row issues and
every stored lead (without ids and timestamps), imported into a venture with ICP segments and
scoring rules; and a digest of what RowNormaliser returns for 20,000 messy rows and 3,000
Apollo-layout rows.

A deliberate change of the import's output regenerates it:
    GOLDEN_UPDATE=1 .venv/bin/pytest leads/tests/test_golden_output.py
and the diff of the JSON file shows what changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from leads.import_rows import RowNormaliser
from leads.models import ImportBatch, ImportIssue, Lead
from leads.parsing import inspect_file, iter_rows, map_headers
from leads.samples import APOLLO_HEADERS, apollo_rows
from leads.scoring import LeadScorer
from leads.tests.messy import (
    MESSY_HEADERS,
    RULES,
    messy_rows,
    save_scoring_setup,
    unsaved_segments,
    write_messy_file,
)
from tests.factories import CampaignFactory, VentureFactory

GOLDEN = Path(__file__).parent / "data" / "golden_import.json"
UPDATE = os.environ.get("GOLDEN_UPDATE") == "1"
MESSY_FILE_ROWS = 150
_SKIPPED_FIELDS = {
    "id",
    "campaign",
    "venture",
    "source_batch",
    "last_batch",
    "created_at",
    "updated_at",
    "first_touch_at",
    "last_touch_at",
}


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return value


def _stored(batch_id: int, campaign) -> dict:
    batch = ImportBatch.objects.get(pk=batch_id)
    names = [f.name for f in Lead._meta.concrete_fields if f.name not in _SKIPPED_FIELDS]
    leads = []
    for lead in Lead.objects.filter(campaign=campaign).select_related("segment"):
        values = {}
        for name in names:
            value = getattr(lead, name)
            if name == "segment":
                value = value.slug if value else None
            if value not in ("", None, {}):
                values[name] = _plain(value)
        leads.append(values)
    leads.sort(key=lambda v: v["email_key"])
    issues = sorted(
        [e.row_number, e.column, e.kind, e.reason]
        for e in ImportIssue.objects.filter(batch_id=batch_id)
    )
    return {
        "counts": batch.counts(),
        "issues": issues,
        "leads": leads,
    }


def _files(sample_dir: Path, tmp_path: Path) -> list[Path]:
    samples = sorted(p for p in sample_dir.iterdir() if p.suffix.lower() in (".csv", ".xlsx"))
    return [*samples, write_messy_file(tmp_path / "messy_leads.csv", MESSY_FILE_ROWS)]


def _normaliser_digest() -> dict:
    """sha256 over what RowNormaliser returns for each row (segment ids are fixed: the
    segments are unsaved instances with set primary keys)."""
    digests = {}
    for name, headers, rows in [
        ("messy", MESSY_HEADERS, messy_rows(20_000, seed=5)),
        ("apollo", APOLLO_HEADERS, apollo_rows(3_000, seed=9)),
    ]:
        normalise = RowNormaliser(
            mapping=map_headers(headers),
            scorer=LeadScorer(segments=unsaved_segments(), rules=RULES),
        )
        digest = hashlib.sha256()
        for number, row in enumerate(rows, start=2):
            result = normalise(number, row)
            if isinstance(result, list):
                text = repr([(i.row, i.column, i.reason, str(i.kind)) for i in result])
            else:
                text = repr(sorted((k, _plain(v)) for k, v in result.items()))
            digest.update(text.encode("utf-8") + b"\n")
        digests[name] = digest.hexdigest()
    return digests


def _load() -> dict:
    if not GOLDEN.exists():
        pytest.fail(f"No golden snapshot at {GOLDEN}; GOLDEN_UPDATE=1 creates it.")
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def _save(section: str, value) -> None:
    data = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.exists() else {}
    data[section] = value
    GOLDEN.parent.mkdir(exist_ok=True)
    # One line per lead and per issue, so a diff shows which changed.
    lines = ["{"]
    for i, (key, value) in enumerate(sorted(data.items())):
        lines.append(
            f"{json.dumps(key)}: {_dumps_by_line(value)}" + ("," if i + 1 < len(data) else "")
        )
    lines.append("}")
    GOLDEN.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _dumps_by_line(value, depth: int = 0) -> str:
    """JSON with a line break between the items of the top three levels only."""
    if depth < 3 and isinstance(value, dict) and value:
        items = [
            f"{json.dumps(k)}: {_dumps_by_line(v, depth + 1)}" for k, v in sorted(value.items())
        ]
        return "{\n" + ",\n".join(items) + "\n}"
    if depth < 3 and isinstance(value, list) and value:
        return "[\n" + ",\n".join(_dumps_by_line(v, 3) for v in value) + "\n]"
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def test_every_sample_and_a_messy_list_store_exactly_the_golden_leads(
    run_import, sample_dir, tmp_path
):
    found = {}
    for path in _files(sample_dir, tmp_path):
        venture = VentureFactory(name=f"Golden {path.stem}", slug=f"golden-{path.stem}"[:50])
        save_scoring_setup(venture)
        campaign = CampaignFactory(venture=venture)
        outcome = run_import(path, into=campaign)
        found[path.name] = _stored(outcome.batch_id, campaign)
    if UPDATE:
        _save("imports", found)
        return
    golden = _load()["imports"]
    assert sorted(found) == sorted(golden), "files differ from the snapshot's"
    for name, stored in found.items():
        expected = golden[name]
        assert stored["counts"] == expected["counts"], name
        assert stored["issues"] == expected["issues"], name
        assert len(stored["leads"]) == len(expected["leads"]), name
        for lead, want in zip(stored["leads"], expected["leads"], strict=True):
            assert lead == want, name


def test_row_normaliser_output_matches_the_golden_digest():
    digests = _normaliser_digest()
    if UPDATE:
        _save("normaliser_sha256", digests)
        return
    assert digests == _load()["normaliser_sha256"]


def test_the_messy_file_is_read_as_written(tmp_path):
    """The generator itself is part of the snapshot: its file must parse back to its rows."""
    path = write_messy_file(tmp_path / "m.csv", 50)
    parsed = [row for _, row in iter_rows(inspect_file(path))]
    assert parsed == [MESSY_HEADERS, *messy_rows(50)]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"icebreaker": "Loved your talk", "Lists": "Bench list"},
        {"Zitat": 'Er sagte "Grüß Gott" \\ und ging', "tab\there": "line\nbreak\r"},
        {"ctl": "\x00\x01\x1f", "sep": "\u2028\u2029", "emoji": "🙂", "cjk": "東京"},
        {"Phone": "+1 (512) 555-0100", 7: "a number as a key"},
        {"value": None, "size": 12, "ok": True},
    ],
)
def test_custom_fields_json_is_the_encoders_text(fields):
    from leads.import_sql import CustomFieldsJson

    encode = CustomFieldsJson()
    expected = json.dumps(fields, ensure_ascii=False)
    assert encode(fields) == expected
    assert encode(dict(fields)) == expected  # again, with the names' prefixes cached


def test_custom_fields_json_forgets_its_names_beyond_ten_thousand():
    from leads.import_sql import CustomFieldsJson

    encode = CustomFieldsJson()
    for i in range(10_050):
        assert encode({f"column {i}": "x"}) == json.dumps({f"column {i}": "x"})
    assert len(encode._prefix) <= 10_001
