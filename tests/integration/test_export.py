"""Export jobs (S0 6.5.2) on real data put in through a real import: each format read back and
compared with the values imported, formulas neutralised in CSV and TSV, the file in the archive
with its name, size and checksum, the ODM round trip into another study, a deleted dataset or one
of another domain failing with the reason, the API's result-file."""
import csv
import hashlib
import io
import json
import re
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
from flask import current_app
from sqlalchemy import func, select

from tests.factories import make_domain, make_job, make_user
from tests.integration.test_import_data import ODM_HEAD, import_dir, run_import, study  # noqa: F401  (fixture)
from webapp.execution import dispatch
from webapp.execution.worker import FiretimeWorker
from webapp.extensions import db, redis_client
from webapp.formats.odm import OdmReader
from webapp.jobtypes import registry
from webapp.models import (ApiToken, ClinicalOid, ClinicalRecord, Dataset, DatasetItem, Domain, ItemDef, ItemValue,
                           Job, Run, RunFile, RunStatus, Subject)
from webapp.models.clinical import OidKind

# (subject, event, event repeat, form, item group, group repeat, item) -> value; None: IsNull.
DATA = {
    ("S-002", "SE.BASE", "1", "F.VS", "IG.VS", "1", "I.HR"): "61",
    ("S-002", "SE.BASE", "1", "F.VS", "IG.VS", "1", "I.SBP"): "121",
    ("S-002", "SE.BASE", "1", "F.VS", "IG.VS", "1", "I.NOTE"): "-12",
    ("S-001", "SE.BASE", "1", "F.VS", "IG.VS", "1", "I.HR"): "60",
    ("S-001", "SE.BASE", "1", "F.VS", "IG.VS", "1", "I.SBP"): "120",
    ("S-001", "SE.BASE", "1", "F.VS", "IG.VS", "1", "I.NOTE"): "=1+1",
    ("S-001", "SE.VISIT", "1", "F.VS", "IG.VS", "1", "I.HR"): "@SUM(A1)",
    ("S-001", "SE.VISIT", "1", "F.VS", "IG.VS", "1", "I.NOTE"): "not in the dataset here",
    ("S-001", "SE.VISIT", "2", "F.VS", "IG.VS", "1", "I.HR"): "+3.5",
    ("S-001", "SE.VISIT", "10", "F.VS", "IG.VS", "1", "I.HR"): None,
    ("S-001", "SE.VISIT", "2", "F.AE", "IG.AE", "1", "I.TERM"): 'nausea, "mild"\nthen better',
    ("S-001", "SE.VISIT", "2", "F.AE", "IG.AE", "2", "I.TERM"): "+cmd|' /C calc'!A0",
    ("S-001", "SE.VISIT", "2", "F.AE", "IG.AE", "2", "I.SEV"): "2",
    ("S-010", "SE.BASE", "1", "F.VS", "IG.VS", "1", "I.HR"): "Übel & <ok>",
}
# The dataset: the heart rate everywhere, the note at baseline only, the adverse event's term.
SELECTED = [("SE.BASE", "F.VS", "IG.VS", "I.HR"), ("SE.BASE", "F.VS", "IG.VS", "I.NOTE"),
            ("SE.VISIT", "F.VS", "IG.VS", "I.HR"), ("SE.VISIT", "F.AE", "IG.AE", "I.TERM")]
ITEM_DEFS = [("I.HR", "Heart rate", "text", 20), ("I.SBP", "Systolic", "integer", 3),
             ("I.NOTE", "Note", "text", 200), ("I.TERM", "Term", "text", 200), ("I.SEV", "Severity", "integer", 1)]


def odm_of(study_oid: str, data: dict) -> str:
    """An ODM file of `data`, with its item definitions; values written as the ODM standard says."""
    out = [ODM_HEAD, f'<Study OID="{study_oid}"><MetaDataVersion OID="v1" Name="v1">']
    out += [f'<ItemDef OID="{oid}" Name="{name}" DataType="{kind}" Length="{length}"/>'
            for oid, name, kind, length in ITEM_DEFS]
    out.append(f'</MetaDataVersion></Study><ClinicalData StudyOID="{study_oid}" MetaDataVersionOID="v1">')
    for (subject, event, repeat, form, group, group_repeat, item), value in data.items():
        shown = 'IsNull="Yes"' if value is None else f"Value={quoteattr(value)}"
        out.append(f'<SubjectData SubjectKey="{subject}"><StudyEventData StudyEventOID="{event}" '
                   f'StudyEventRepeatKey="{repeat}"><FormData FormOID="{form}"><ItemGroupData ItemGroupOID="{group}" '
                   f'ItemGroupRepeatKey="{group_repeat}"><ItemData ItemOID="{item}" {shown}/></ItemGroupData>'
                   f'</FormData></StudyEventData></SubjectData>')
    out.append("</ClinicalData></ODM>\n")
    return "".join(out)


def expected() -> dict:
    chosen = set(SELECTED)
    return {key: value for key, value in DATA.items() if (key[1], key[3], key[4], key[6]) in chosen}


def load(import_dir, domain_id, data=None, study_oid="STUDY-A", job_name="Import A"):
    """Put `data` into the domain through a real import job run."""
    (import_dir / "data.xml").write_text(odm_of(study_oid, data or DATA), encoding="utf-8")
    importing(domain_id, job_name)


def importing(domain_id, job_name):
    """An import job run of what waits in the import folder, into the domain."""
    job = make_job(job_name, job_type="import_data", domain=db.session.get(Domain, domain_id), params={})
    run = run_import(job.id)
    assert run.status == RunStatus.SUCCEEDED, run.message


def make_dataset(domain_id, name="Vitals", selected=SELECTED) -> int:
    """A dataset of the domain selecting (event, form, item group, item) OIDs."""
    oids = {(row.kind, row.oid): row.id for row in db.session.scalars(
        select(ClinicalOid).where(ClinicalOid.domain_id == domain_id))}
    items = {row.oid: row.id for row in db.session.scalars(select(ItemDef).where(ItemDef.domain_id == domain_id))}
    dataset = Dataset(domain_id=domain_id, name=name)
    dataset.items = [DatasetItem(event_id=oids[OidKind.EVENT, e], form_id=oids[OidKind.FORM, f],
                                 group_id=oids[OidKind.GROUP, g], item_id=items[i]) for e, f, g, i in selected]
    db.session.add(dataset)
    db.session.commit()
    return dataset.id


def export_job(domain_id, dataset_id, fmt="csv", name="Weekly vitals", **fields) -> int:
    return make_job(name, job_type="export_dataset", domain=db.session.get(Domain, domain_id),
                    params={"dataset": dataset_id, "format": fmt}, **fields).id


def run_export(job_id, user=None, args="") -> Run:
    run_id = dispatch.request_run(db.session.get(Job, job_id), user=user, args=args).id
    FiretimeWorker(registry.queue_names(), connection=redis_client.conn).work(burst=True)
    db.session.expire_all()
    return db.session.get(Run, run_id)


def file_of(run) -> tuple[RunFile, bytes]:
    [file] = run.files
    return file, (Path(current_app.config["FILES_DIR"]) / file.path).read_bytes()


@pytest.fixture
def vitals(import_dir):
    """Study A holding DATA, its dataset "Vitals" (SELECTED): (domain id, dataset id)."""
    domain = study("STUDY-A")
    load(import_dir, domain)
    return domain, make_dataset(domain)


# --- each format, read back -------------------------------------------------------------------

# Columns by form, item group and item OID.
HEADER = ["SubjectKey", "StudyEventOID", "StudyEventRepeatKey", "ItemGroupRepeatKey", "I.TERM", "I.HR", "I.NOTE"]
# One row per subject, event, event repeat (and item group repeat): subjects by key, events by OID,
# repeats as numbers; cells that a spreadsheet would take for a formula start with an apostrophe.
CSV_ROWS = [
    ["S-001", "SE.BASE", "1", "1", "", "60", "'=1+1"],
    ["S-001", "SE.VISIT", "1", "1", "", "'@SUM(A1)", ""],
    ["S-001", "SE.VISIT", "2", "1", 'nausea, "mild"\nthen better', "+3.5", ""],
    ["S-001", "SE.VISIT", "2", "2", "'+cmd|' /C calc'!A0", "", ""],
    ["S-001", "SE.VISIT", "10", "1", "", "", ""],
    ["S-002", "SE.BASE", "1", "1", "", "61", "-12"],
    ["S-010", "SE.BASE", "1", "1", "", "Übel & <ok>", ""],
]


@pytest.mark.parametrize("fmt, delimiter", [("csv", ","), ("tsv", "\t")])
def test_csv_and_tsv_have_a_row_per_subject_event_and_repeat_with_formulas_neutralised(vitals, fmt, delimiter):
    domain, dataset = vitals
    run = run_export(export_job(domain, dataset, fmt))
    assert run.status == RunStatus.SUCCEEDED, run.message
    file, content = file_of(run)
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"), newline=""), delimiter=delimiter))
    assert rows == [HEADER, *CSV_ROWS]
    assert file.content_type.startswith("text/csv" if fmt == "csv" else "text/tab-separated-values")
    assert (run.stats["values"], run.stats["subjects"], run.stats["rows"]) == (len(expected()), 3, 7)


def test_json_is_an_array_of_rows_with_the_values_as_they_are(vitals):
    domain, dataset = vitals
    run = run_export(export_job(domain, dataset, "json"))
    assert run.status == RunStatus.SUCCEEDED, run.message
    file, content = file_of(run)
    rows = json.loads(content)
    assert file.content_type == "application/json"
    keys = [[row["SubjectKey"], row["StudyEventOID"], row["StudyEventRepeatKey"], row["ItemGroupRepeatKey"]]
            for row in rows]
    assert keys == [row[:4] for row in CSV_ROWS]
    assert rows[0]["items"] == {"I.HR": "60", "I.NOTE": "=1+1", "I.TERM": None}  # JSON is no spreadsheet
    assert rows[3]["items"]["I.TERM"] == "+cmd|' /C calc'!A0"


def test_odm_holds_exactly_the_datasets_values_with_item_definitions(vitals):
    domain, dataset = vitals
    run = run_export(export_job(domain, dataset, "odm"))
    assert run.status == RunStatus.SUCCEEDED, run.message
    file, content = file_of(run)
    assert file.content_type == "application/xml" and file.name.endswith(".xml")
    reader = OdmReader(io.BytesIO(content))
    parts = list(reader)
    assert parts[0].study_oid == "STUDY-A"
    assert {oid: (d.name, d.data_type, d.length) for oid, d in parts[0].item_defs.items()} == {
        "I.HR": ("Heart rate", "text", 20), "I.NOTE": ("Note", "text", 200), "I.TERM": ("Term", "text", 200)}
    rows = [row for batch in parts[1:] for row in batch]
    assert {row[:7]: row[7] for row in rows} == expected()
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)  # subject by subject


def test_the_file_is_archived_with_its_name_dataset_format_size_and_checksum(vitals):
    domain, dataset = vitals
    job = export_job(domain, dataset, "tsv")
    run = run_export(job)
    file, content = file_of(run)
    assert re.fullmatch(r"Vitals_\d{8}_\d{6}\.tsv", file.name), file.name
    assert (file.dataset_id, file.dataset_name, file.file_format) == (dataset, "Vitals", "tsv")
    assert (file.size, file.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    assert (file.run_id, file.job_id) == (run.id, job)


def test_an_empty_dataset_writes_the_header_and_warns(import_dir):
    domain = study("STUDY-A")
    load(import_dir, domain, {("S-1", "SE.BASE", "1", "F.VS", "IG.VS", "1", "I.SBP"): "1"})
    db.session.add(ClinicalOid(domain_id=domain, kind=OidKind.EVENT, oid="SE.VISIT"))
    db.session.commit()
    dataset = make_dataset(domain, selected=[("SE.VISIT", "F.VS", "IG.VS", "I.HR")])
    run = run_export(export_job(domain, dataset))
    assert run.status == RunStatus.WARNINGS, run.message
    assert file_of(run)[1].decode().splitlines() == [",".join(HEADER[:4] + ["I.HR"])]


# --- failures ---------------------------------------------------------------------------------

def test_a_dataset_deleted_after_the_job_was_saved_fails_the_run_with_the_reason(vitals):
    domain, dataset = vitals
    job = export_job(domain, dataset)
    db.session.delete(db.session.get(Dataset, dataset))
    db.session.commit()
    run = run_export(job)
    assert run.status == RunStatus.FAILED
    assert f"Dataset {dataset} no longer exists: it was deleted after the job was saved" in run.message
    assert run.files == []


def test_a_value_xml_cannot_carry_fails_the_odm_export_by_name_and_leaves_no_half_file(vitals):
    domain, dataset = vitals
    db.session.get(Dataset, dataset).name = "Control characters"
    stored = db.session.scalar(select(ItemValue).where(ItemValue.value == "61"))
    stored.value = "6\x011"
    db.session.commit()
    run = run_export(export_job(domain, dataset, "odm"))
    assert run.status == RunStatus.FAILED
    assert "cannot write item I.HR of subject S-002" in run.message and "U+0001" in run.message
    assert run.files == []
    assert not list((Path(current_app.config["FILES_DIR"]) / "runs" / str(run.id)).glob("Control_characters_*"))


def test_an_export_job_exports_only_datasets_of_its_own_domain(vitals):
    domain, dataset = vitals
    other = make_domain("Study B")
    run = run_export(export_job(other.id, dataset))
    assert run.status == RunStatus.FAILED and "is not a dataset of the job's domain" in run.message
    assert run.files == []


def test_parameters_are_checked_when_the_job_is_saved_or_run():
    export = registry.get("export_dataset")
    assert export.load_params({"dataset": "7"}) == {"dataset": 7, "format": "csv"}
    for bad, field in (({}, "dataset"), ({"dataset": "x"}, "dataset"), ({"dataset": 0}, "dataset"),
                       ({"dataset": 2**31}, "dataset"), ({"dataset": 1, "format": "xls"}, "format")):
        with pytest.raises(registry.InvalidArguments) as refused:
            export.load_params(bad)
        assert field in refused.value.errors
    assert "ODM 1.3 XML" in str(pytest.raises(registry.InvalidArguments, export.load_params,
                                              {"dataset": 1, "format": "xml"}).value)


# --- the round trip ---------------------------------------------------------------------------

def test_an_odm_export_imported_into_another_study_reproduces_the_values(vitals, import_dir):
    domain, dataset = vitals
    run = run_export(export_job(domain, dataset, "odm"))
    _, content = file_of(run)
    # Another study with the same items: the file names its study, as every ODM file does.
    study_b = study("STUDY-B")
    (import_dir / "from-a.xml").write_bytes(content.replace(b'StudyOID="STUDY-A"', b'StudyOID="STUDY-B"'))
    importing(study_b, "Import B")
    imported = db.session.scalar(select(func.count()).select_from(ItemValue)
                                 .join(ClinicalRecord, ClinicalRecord.id == ItemValue.record_id)
                                 .join(Subject, Subject.id == ClinicalRecord.subject_id)
                                 .where(Subject.domain_id == study_b))
    assert imported == len(expected())
    # Every key (event, repeats, form, group), not only subject and item: export B and compare.
    dataset_b = make_dataset(study_b, "Vitals B")
    again = run_export(export_job(study_b, dataset_b, "odm", name="Export B"))
    rows = [row for batch in list(OdmReader(io.BytesIO(file_of(again)[1])))[1:] for row in batch]
    assert {row[:7]: row[7] for row in rows} == expected()


# --- manual extracts, the API -----------------------------------------------------------------

def test_a_manual_extract_is_a_run_of_the_domains_extract_job_on_the_export_queue(vitals):
    from webapp.jobtypes.export_dataset import extract_args, extract_job

    domain, dataset = vitals
    job = extract_job(db.session.get(Domain, domain))
    assert extract_job(db.session.get(Domain, domain)).id == job.id  # one per domain
    assert (job.system, job.domain_id, registry.get(job.job_type).queue) == (True, domain, "export")
    run = run_export(job.id, user=make_user(), args=extract_args(dataset, "json"))
    assert run.status == RunStatus.SUCCEEDED, run.message
    file, _ = file_of(run)
    assert (file.dataset_id, file.file_format) == (dataset, "json")
    # Its arguments cannot reach another domain's dataset.
    other = extract_job(make_domain("Study B"))
    refused = run_export(other.id, args=extract_args(dataset, "csv"))
    assert refused.status == RunStatus.FAILED and "not a dataset of the job's domain" in refused.message


def test_the_api_result_file_is_the_export(vitals, client):
    domain, dataset = vitals
    job = export_job(domain, dataset, "csv")
    run = run_export(job)
    _, token = ApiToken.issue(make_user())
    db.session.commit()
    response = client.get(f"/api/scheduled-jobs/{job}/runs/{run.id}/result-file",
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8" and response.get_data() == file_of(run)[1]
    assert run.files[0].name in response.headers["Content-Disposition"]


def test_the_report_email_links_to_the_exported_file(vitals):
    from webapp.execution.notify import build_message
    from webapp.models import EmailDelivery

    domain, dataset = vitals
    run = run_export(export_job(domain, dataset, "csv", report_enabled=True, report_recipients="dm@example.org"))
    delivery = db.session.scalar(select(EmailDelivery).where(EmailDelivery.run_id == run.id))
    body = build_message(delivery).body
    file = run.files[0]
    assert file.name in body and f"/runs/files/{file.id}" in body


def test_the_job_form_can_ask_whether_a_dataset_belongs_to_the_jobs_domain(vitals):
    from webapp.jobtypes.export_dataset import dataset_problem

    domain, dataset = vitals
    other = make_domain("Study B").id
    assert dataset_problem(dataset, domain) is None
    assert "execution domain" in dataset_problem(dataset, other)
    assert "There is no dataset 999" in dataset_problem(999, domain)


def test_the_extract_job_keeps_no_dataset_and_a_run_without_one_says_how_to_name_it(vitals):
    from webapp.jobtypes.export_dataset import extract_job

    domain, _ = vitals
    extract = registry.get("export_extract")
    assert extract.load_params({}) == {"dataset": None, "format": "csv"}  # its settings save as they are
    run = run_export(extract_job(db.session.get(Domain, domain)).id)
    assert run.status == RunStatus.FAILED and "use Export now on the dataset's page" in run.message
