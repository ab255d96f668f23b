"""Envelopes in (issue 11): upload, validate, load, report and rollback, on the real database.

Most tests run an envelope's chain in this process (webapp.linkage.demo.run_here: the real step
functions, runs recorded as a worker would); the last ones go through a real worker and the chain's
finish hook. Each bad input of the issue ends with a clear reason on the envelope and leaves the
earlier envelopes' records and groups as they were."""
import csv
import gzip
import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage

from tests.conftest import wait_for
from tests.factories import make_user
from webapp.extensions import db
from webapp.linkage import demo, upload
from webapp.models import AuditEvent, Domain, Run, RunFile, RunStatus
from webapp.models.linkage import Envelope, EnvelopeNotification, EnvelopeStatus, LinkageRecord
from webapp.models.settings import set_setting

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "docs" / "samples" / "sample-envelope.zip"
COLUMNS = {"id": "person_id", "first_name": "given", "surname": "family", "dob": "birth_date", "sex": "sex",
           "postcode": "postcode"}
HEADER = "person_id,given,family,birth_date,sex,postcode"
PEOPLE = [  # two of them (1 and 4) the same person
    "P1,Anna,Smith,1980-04-02,F,SW1A 1AA",
    "P2,Bert,Jones,1975-11-30,M,LS1 4AP",
    "P3,Cara,Brown,1990-06-15,F,M1 1AE",
    "P4,Ana,Smith,02/04/1980,female,sw1a1aa",
    "P5,Dev,Patel,1969-01-09,M,B1 1BB",
]


@pytest.fixture
def admin(ctx):
    return make_user()


@pytest.fixture
def project(ctx):
    domain = Domain(name="Registry T", kind="linkage")
    db.session.add(domain)
    db.session.commit()
    shutil.rmtree(Path(ctx.config["FILES_DIR"], "envelopes", str(domain.id)), ignore_errors=True)  # ids recur
    return domain


def manifest(**file) -> dict:
    spec = {"name": "people.csv", "delimiter": ",", "encoding": "utf-8", "columns": dict(COLUMNS)}
    spec.update(file)
    return {"format": "firetime-envelope/1", "files": [spec]}


def make_zip(entries: dict, manifest_=None) -> bytes:
    """A zip of `entries` (name -> bytes or str), with manifest.json first unless manifest_ is False."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        if manifest_ is not False:
            archive.writestr("manifest.json", json.dumps(manifest_ or manifest()))
        for name, content in entries.items():
            archive.writestr(name, content.encode() if isinstance(content, str) else content)
    return out.getvalue()


def people(*rows, header=HEADER) -> str:
    return "\n".join((header, *rows)) + "\n"


def store(project, admin, content: bytes, name="people.zip") -> Envelope:
    return upload.store(admin, project, name, io.BytesIO(content))


def process(project, admin, content: bytes, name="people.zip") -> Envelope:
    envelope = store(project, admin, content, name)
    demo.run_here(envelope, admin)
    db.session.refresh(envelope)
    return envelope


def project_state(project) -> list[tuple]:
    """What an earlier envelope left in the project: every record and its group."""
    return db.session.execute(select(LinkageRecord.record_key, LinkageRecord.envelope_id, LinkageRecord.group_id)
                              .where(LinkageRecord.project_id == project.id).order_by(LinkageRecord.id)).all()


def notes(envelope) -> dict:
    rows = db.session.scalars(select(EnvelopeNotification).where(EnvelopeNotification.envelope_id == envelope.id))
    return {note.reason: (note.level, note.count, note.first_lines) for note in rows}


def encrypted(content: bytes) -> bytes:
    """The zip with every entry flagged encrypted (bit 0 of the flags, local and central headers):
    what a reader sees of a ZipCrypto or AES archive."""
    data = bytearray(content)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset] |= 0x1
            at = data.find(signature, at + 4)
    return bytes(data)


# --- a good envelope --------------------------------------------------------------------------------

def test_the_sample_envelope_goes_through_the_whole_chain(app, project, admin):
    envelope = process(project, admin, SAMPLE.read_bytes(), "sample-envelope.zip")
    assert envelope.status == EnvelopeStatus.SUCCESS, envelope.reason
    assert envelope.record_count == 50
    runs = db.session.scalars(select(Run).where(Run.envelope_id == envelope.id).order_by(Run.id)).all()
    assert [run.args.split()[0] for run in runs] == ["step=validate", "step=load", "step=match", "step=group",
                                                     "step=report"]
    assert all(run.status == RunStatus.SUCCEEDED for run in runs), [(r.args, r.message) for r in runs]
    assert runs[0].stats == {"files": 1, "rows": 50}
    assert runs[1].stats == {"rows_read": 50, "loaded": 50, "rejected": 0}
    grouped = db.session.scalar(select(func.count(func.distinct(LinkageRecord.group_id)))
                                .where(LinkageRecord.project_id == project.id))
    assert 40 <= grouped < 50  # the sample holds a few people twice, and the match step finds them


def test_the_sample_csv_is_an_implicit_envelope_of_the_same_records(app, project, admin):
    content = (ROOT / "docs" / "samples" / "sample-people.csv").read_bytes()
    envelope = process(project, admin, content, "sample-people.csv")
    assert (envelope.kind, envelope.status, envelope.record_count) == ("csv", EnvelopeStatus.SUCCESS, 50)
    record = db.session.scalar(select(LinkageRecord).where(LinkageRecord.record_key == "R0000001"))
    assert record.extra["site"].startswith("site-")  # a column beyond the person fields is kept


def test_upload_streams_to_the_files_directory_with_size_and_sha256(app, project, admin):
    content = make_zip({"people.csv": people(*PEOPLE)})
    envelope = upload.receive(admin, project, FileStorage(io.BytesIO(content), filename="C:\\data\\march.csv"))
    assert envelope.name == "march.csv"
    assert envelope.kind == "zip"  # by its content, not its name
    assert envelope.path == f"envelopes/{project.id}/{envelope.id}.zip"
    stored = Path(app.config["FILES_DIR"], envelope.path).read_bytes()
    assert stored == content
    assert (envelope.size, envelope.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    runs = db.session.scalars(select(Run).where(Run.envelope_id == envelope.id)).all()
    assert sorted(run.args for run in runs) == sorted(f"step={s} envelope={envelope.id}"
                                                      for s in ("validate", "load", "match", "group", "report"))
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "upload")).object_id == envelope.id


def test_an_upload_without_a_file_is_refused_and_records_nothing(app, project, admin):
    for storage in (None, FileStorage(io.BytesIO(b"id\n"), filename=""), FileStorage(io.BytesIO(b""), filename="\x00/")):
        with pytest.raises(upload.UploadRefused, match="Choose a zip envelope or a CSV file"):
            upload.receive(admin, project, storage)
    assert db.session.scalar(select(func.count()).select_from(Envelope)) == 0


def test_an_upload_over_the_limit_is_a_corrupt_envelope_without_a_file(app, project, admin):
    set_setting("envelope_max_mb", 1)
    db.session.commit()
    assert upload.limit_bytes() == 1024 * 1024
    envelope = store(project, admin, b"x" * (1024 * 1024 + 1), "huge.zip")
    assert (envelope.status, envelope.path) == (EnvelopeStatus.CORRUPT, "")
    assert envelope.reason == "The file is larger than the limit of 1 MB."
    assert os.listdir(Path(app.config["FILES_DIR"], "envelopes", str(project.id))) == []  # the part is gone
    refused = upload.record_refused(admin, project, "big.zip", upload.too_large_reason())
    assert (refused.status, refused.kind, refused.reason) == (EnvelopeStatus.CORRUPT, "zip", envelope.reason)


# --- bad input: each a Corrupt envelope with its reason; the earlier envelope keeps all it had -------

BAD_INPUT = {
    "wrong delimiter": (make_zip({"people.csv": people(*(r.replace(",", ";") for r in PEOPLE),
                                                       header=HEADER.replace(",", ";"))}),
                        "people.csv: the header reads as one column with the delimiter comma (,); the file seems to "
                        "be separated by semicolon (;)"),
    "wrong encoding": (make_zip({"people.csv": people(*PEOPLE[:2], "P9,Zoë,Müller,1970-01-01,F,").encode("latin-1")}),
                       "people.csv, line 4: bytes that are not utf-8"),
    "missing columns": (make_zip({"people.csv": people("P1,Anna,Smith", header="person_id,given,family")}),
                        "people.csv: the header lacks the column(s) birth_date (dob), sex, postcode; it has person_id, given, family."),
    "empty file": (make_zip({"people.csv": ""}), "people.csv is empty."),
    "header only": (make_zip({"people.csv": people()}), "people.csv has a header but no rows."),
    "empty upload": (b"", "people.csv is empty."),
    "zip slip": (make_zip({"people.csv": people(*PEOPLE), "../../etc/passwd": "root:x:0:0"}),
                 "The zip holds an entry with an unsafe path, “../../etc/passwd”"),
    "absolute path": (make_zip({"/etc/cron.d/x": "* * * * * root true"}), "unsafe path, “/etc/cron.d/x”"),
    "backslash": (make_zip({"..\\..\\x.csv": "a"}), "unsafe path"),
    "drive letter": (make_zip({"C:/x.csv": "a"}), "unsafe path"),
    "missing file": (make_zip({}), "The manifest names people.csv, which the zip does not hold."),
    "no manifest": (make_zip({"people.csv": people(*PEOPLE)}, manifest_=False), "The zip holds no manifest.json"),
    "manifest in a folder": (make_zip({"batch/manifest.json": "{}", "batch/people.csv": "x"}, manifest_=False),
                             "manifest.json must be at the top of the zip"),
    "manifest not json": (make_zip({"manifest.json": "{files: [", "people.csv": people(*PEOPLE)}, manifest_=False),
                          "manifest.json is not JSON"),
    "wrong format": (make_zip({"people.csv": people(*PEOPLE)}, {"format": "other/2", "files": []}),
                     'manifest.json must be an object with "format": "firetime-envelope/1".'),
    "no dob mapping": (make_zip({"people.csv": people(*PEOPLE)},
                                manifest(columns={k: v for k, v in COLUMNS.items() if k != "dob"})),
                       "no column mapping for dob"),
    "unknown encoding": (make_zip({"people.csv": people(*PEOPLE)}, manifest(encoding="klingon")),
                         "unknown encoding 'klingon'"),
    "not a csv": (make_zip({"people.csv": people(*PEOPLE), "notes.txt": "hello"}),
                  "The zip holds “notes.txt”, which the manifest does not name"),
    "encrypted": (encrypted(make_zip({"people.csv": people(*PEOPLE)})), "is encrypted"),
    "nested zip": (make_zip({"people.csv": people(*PEOPLE), "more.zip": make_zip({})}),
                   "The zip holds another archive, “more.zip”: nested archives are refused."),
    "nested by content": (make_zip({"people.csv": gzip.compress(people(*PEOPLE).encode())}),
                          "people.csv is a gzip archive, not a CSV file"),
    "zip bomb": (make_zip({"people.csv": people(*PEOPLE) + " " * (4 << 20)}),
                 "more than 100 times is refused as a zip bomb"),
    "too many entries": (make_zip({f"p{i}.csv": "x" for i in range(100)}), "an envelope may hold at most 100"),
    "not a zip": (b"PK\x03\x04 but not really a zip", "The zip archive cannot be read"),
    "gzip as csv": (gzip.compress(people(*PEOPLE).encode()), "is a gzip archive, not a CSV file"),
    "NUL": (make_zip({"people.csv": people(*PEOPLE[:3], "P4,A\x00na,Smith,1980-04-02,F,")}),
            "people.csv, line 5: a NUL character"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_makes_a_corrupt_envelope_and_loses_nothing_earlier(app, project, admin, case):
    earlier = process(project, admin, make_zip({"people.csv": people(*PEOPLE)}))
    assert earlier.status == EnvelopeStatus.SUCCESS
    before = project_state(project)
    content, reason = BAD_INPUT[case]
    name = "people.csv" if case in ("empty upload", "gzip as csv") else "people.zip"
    envelope = process(project, admin, content, name)
    assert envelope.status == EnvelopeStatus.CORRUPT
    assert reason in envelope.reason
    assert project_state(project) == before
    assert db.session.get(Envelope, earlier.id).status == EnvelopeStatus.SUCCESS
    steps = db.session.scalars(select(Run.args).where(Run.envelope_id == envelope.id)).all()
    assert steps == [f"step=validate envelope={envelope.id}"]  # nothing else ran
    files = os.listdir(Path(app.config["FILES_DIR"], "envelopes", str(project.id)))
    assert sorted(files) == sorted([f"{earlier.id}.zip", f"{envelope.id}.{envelope.kind}"])  # nothing extracted


def test_the_zip_bomb_bound_on_the_whole_archive(app, project, admin):
    content = make_zip({"people.csv": people(*PEOPLE), "more.csv": "\n" * (21 << 20)},
                       {"format": "firetime-envelope/1", "files": [manifest()["files"][0],
                                                                   dict(manifest()["files"][0], name="more.csv")]})
    envelope = store(project, admin, content)
    set_setting("envelope_max_mb", 1)  # lowered after the upload: 20 MiB is the bound now
    db.session.commit()
    demo.run_here(envelope, admin)
    db.session.refresh(envelope)
    assert envelope.status == EnvelopeStatus.CORRUPT
    assert "more than 20 times the upload limit" in envelope.reason


def test_an_implicit_csv_may_use_semicolons_or_tabs_and_any_header_case(app, project, admin):
    for number, delimiter in enumerate((";", "\t")):
        rows = [f"T{number}{i}{delimiter}Anna{delimiter}Smith{delimiter}1980-04-0{i}" for i in range(1, 4)]
        content = "\ufeffID{0}First_Name{0}Surname{0}DOB\n".format(delimiter) + "\n".join(rows) + "\n"
        envelope = process(project, admin, content.encode(), f"list-{number}.csv")
        assert (envelope.status, envelope.record_count) == (EnvelopeStatus.SUCCESS, 3), envelope.reason


def test_an_implicit_csv_that_is_not_utf8_says_so(app, project, admin):
    content = "id,first_name,surname,dob\nP1,Zoë,Müller,1970-01-01\n".encode("cp1252")
    envelope = process(project, admin, content, "people.csv")
    assert envelope.status == EnvelopeStatus.CORRUPT
    assert envelope.reason.startswith("people.csv, line 2: bytes that are not utf-8 (an uploaded CSV file must be UTF-8)")


def test_a_declared_encoding_is_read(app, project, admin):
    content = make_zip({"people.csv": people("P9,Zoë,Müller,01.02.1970,F,").encode("cp1252")},
                       manifest(encoding="cp1252", delimiter=","))
    envelope = process(project, admin, content)
    assert envelope.status == EnvelopeStatus.SUCCESS, envelope.reason
    record = db.session.scalar(select(LinkageRecord))
    assert (record.first_name, record.surname, record.dob) == ("Zoë", "Müller", "1970-02-01")


# --- rows load rejects --------------------------------------------------------------------------------

def test_dates_in_several_formats_load_as_one(app, project, admin):
    written = ["1980-04-02", "02/04/1980", "2/4/1980", "02-04-1980", "2.4.1980", "19800402", "1980/04/02",
               "2 Apr 1980", "2nd April 1980", "02-Apr-1980", '"April 2, 1980"', "1980-04-02T00:00:00"]
    rows = [f"D{i},Anna,Smith,{value},F," for i, value in enumerate(written)]
    rows += ["X1,Anna,Smith,31/02/1980,F,", "X2,Anna,Smith,02/04/80,F,", "X3,Anna,Smith,soon,F,",
             "X4,Anna,Smith,2999-01-01,F,", "X5,Anna,Smith,,F,"]
    envelope = process(project, admin, make_zip({"people.csv": people(*rows)}))
    dobs = dict(db.session.execute(select(LinkageRecord.record_key, LinkageRecord.dob)).all())
    assert {dobs[f"D{i}"] for i in range(len(written))} == {"1980-04-02"}
    assert dobs["X5"] is None  # no date is allowed; a wrong one is not
    assert notes(envelope)["dob not a date"] == ("error", 3, "14, 15, 16")
    assert dobs["X4"] == "2999-01-01"  # a typing error, likely: loaded as written, with a warning
    assert notes(envelope)["dob in the future, loaded as written (a typing error?)"] == ("warning", 1, "17")
    assert envelope.status == EnvelopeStatus.ERRORS
    assert envelope.record_count == len(written) + 2


def test_duplicate_ids_inside_and_across_envelopes(app, project, admin):
    first = process(project, admin, make_zip({"people.csv": people(*PEOPLE)}), "first.zip")
    before = project_state(project)
    rows = ["Q1,Eve,Stone,1991-01-01,F,", "Q1,Eva,Stone,1991-01-01,F,", "P2,Bert,Jones,1975-11-30,M,",
            "Q2,Finn,Hart,1988-08-08,M,", "P5,Dev,Patel,1969-01-09,M,", "Q2,Finn,Hart,1988-08-08,M,"]
    second = process(project, admin, make_zip({"people.csv": people(*rows)}), "second.zip")
    assert notes(second)["id repeated in the envelope (the first row with it is loaded)"] == ("error", 2, "3, 7")
    assert notes(second)[f"id already in the project, brought by envelope #{first.id} “first.zip”"] == \
        ("error", 2, "4, 6")
    assert second.status == EnvelopeStatus.ERRORS and second.record_count == 2
    keys = db.session.scalars(select(LinkageRecord.record_key).where(LinkageRecord.envelope_id == second.id)).all()
    assert sorted(keys) == ["Q1", "Q2"]
    assert [(k, e) for k, e, _g in project_state(project) if e == first.id] == [(k, e) for k, e, _g in before]
    load = db.session.scalar(select(Run).where(Run.args == f"step=load envelope={second.id}"))
    assert load.status == RunStatus.WARNINGS
    assert load.stats == {"rows_read": 6, "loaded": 2, "rejected": 4}


def test_bad_rows_are_rejected_one_notification_per_reason(app, project, admin):
    rows = ["A1,Anna,Smith,1980-04-02,F,", ",Bob,Jones,1970-01-01,M,", "A3,,Brown,1990-06-15,F,",
            "A4,Cara,Brown,1990-06-15,F", "A5,Dev,,1969-01-09,M,", "A6,Eve,Stone,1991-01-01,F,,extra",
            "", f"{'x' * 101},Finn,Hart,1988-08-08,M,"]
    envelope = process(project, admin, make_zip({"people.csv": people(*rows)}))
    assert notes(envelope) == {
        "no id": ("error", 1, "3"),
        "no first name or no surname": ("error", 2, "4, 6"),
        "wrong number of fields (the header has 6)": ("error", 2, "5, 7"),
        "id longer than 100 characters": ("error", 1, "9"),
        "1 records loaded of 7 rows read.": ("info", 1, ""),
    }
    load = db.session.scalar(select(Run).where(Run.args == f"step=load envelope={envelope.id}"))
    log = db.session.get(Run, load.id)
    assert log.warning_count == 1 and "The step succeeds, and the envelope ends with Errors." in _log(load)
    assert "Rejected 2 rows: no first name or no surname: lines 4, 6." in _log(load)


def _log(run) -> str:
    from webapp.models import RunLogLine

    return "\n".join(db.session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run.id)))


def test_several_files_name_the_file_in_line_numbers(app, project, admin):
    spec = manifest()["files"][0]
    content = make_zip({"a.csv": people(*PEOPLE[:2]), "b.csv": people("Z1,,Brown,1990-06-15,F,")},
                       {"format": "firetime-envelope/1", "files": [dict(spec, name="a.csv"), dict(spec, name="b.csv")]})
    envelope = process(project, admin, content)
    assert notes(envelope)["no first name or no surname"] == ("error", 1, "b.csv:2")
    assert {r.source_file for r in db.session.scalars(select(LinkageRecord))} == {"a.csv"}


# --- report ---------------------------------------------------------------------------------------------

def test_the_report_counts_each_step_and_lists_every_record_of_the_project(app, project, admin):
    first = process(project, admin, make_zip({"people.csv": people(*PEOPLE)}), "first.zip")
    second = process(project, admin, make_zip({"people.csv": people("N1,Anna,Smith,1980-04-02,F,SW1A 1AA",
                                                                     "N2,,Nobody,1980-01-01,,")}))
    report = db.session.scalar(select(Run).where(Run.args == f"step=report envelope={second.id}"))
    files = {f.name: f for f in db.session.scalars(select(RunFile).where(RunFile.run_id == report.id))}
    assert set(files) == {f"envelope-{second.id}-report.csv",
                          f"project-{project.id}-groups-after-envelope-{second.id}.csv"}
    rows = _csv(app, files[f"envelope-{second.id}-report.csv"])
    assert rows[0] == ["step", "run", "status", "measure", "count", "detail"]
    measured = {(row[0], row[3]): row[4] for row in rows[1:]}
    assert measured[("validate", "rows")] == "2"
    assert measured[("load", "loaded")] == "1" and measured[("load", "rejected")] == "1"
    assert measured[("load", "notification: error")] == "1"
    assert measured[("project", "records")] == "6"
    assert "pairs" in {row[3] for row in rows if row[0] == "match"}
    groups = _csv(app, files[f"project-{project.id}-groups-after-envelope-{second.id}.csv"])
    assert groups[0] == ["record_key", "group_id"]
    assert sorted(row[0] for row in groups[1:]) == ["N1", "P1", "P2", "P3", "P4", "P5"]
    group_of = {row[0]: row[1] for row in groups[1:]}
    assert group_of["N1"] == group_of["P1"] == group_of["P4"]  # the same Anna Smith, across envelopes
    assert len({group_of["P2"], group_of["P3"], group_of["P5"], group_of["P1"]}) == 4
    assert first.status == EnvelopeStatus.SUCCESS


def test_the_report_and_groups_files_neutralise_formulas_from_the_upload(app, project, admin):
    """Record ids come from the uploaded file: one a spreadsheet would run as a formula is written
    with a leading apostrophe, as the exports write such cells; a plain number is left alone."""
    hostile = ["=cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "-12"]
    envelope = process(project, admin, people(*(f"{key},Ann{n},Smith{n},1980-04-0{n + 1},F,SW1A 1AA"
                                                  for n, key in enumerate(hostile)),
                                         header="id,first_name,surname,dob,sex,postcode").encode(), "ids.csv")
    assert envelope.status == EnvelopeStatus.SUCCESS and envelope.record_count == 4
    report = db.session.scalar(select(Run).where(Run.args == f"step=report envelope={envelope.id}"))
    files = {f.name: f for f in db.session.scalars(select(RunFile).where(RunFile.run_id == report.id))}
    keys = {row[0] for row in _csv(app, files[f"project-{project.id}-groups-after-envelope-{envelope.id}.csv"])[1:]}
    assert keys == {"'=cmd|' /C calc'!A0", "'@SUM(1+1)", "'-2+3", "-12"}
    for row in _csv(app, files[f"envelope-{envelope.id}-report.csv"]):
        assert not any(cell[:1] in ("=", "+", "@") for cell in row), row


def _csv(app, run_file) -> list[list[str]]:
    with open(Path(app.config["FILES_DIR"], run_file.path), newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# --- rollback -------------------------------------------------------------------------------------------

def _rollback_here(envelope, user):
    """A rollback run of the envelope, run here as the worker would."""
    from webapp.linkage import chain

    job = chain.project_job(envelope.project)
    return demo._step_here(job, envelope, "rollback", user)


def test_rollback_restores_the_groups_exactly_as_before(app, project, admin):
    process(project, admin, make_zip({"people.csv": people(*PEOPLE)}), "first.zip")
    before = project_state(project)
    second = process(project, admin, make_zip({"people.csv": people("N1,Anna,Smith,1980-04-02,F,SW1A 1AA",
                                                                     "N2,Bert,Jones,1975-11-30,M,LS1 4AP")}))
    third = process(project, admin, make_zip({"people.csv": people("M1,Ann,Smith,1980-04-02,F,SW1A 1AA",
                                                                    "M2,Cara,Brown,1990-06-15,F,M1 1AE")}))
    assert project_state(project) != before  # the later envelopes joined earlier groups
    run = _rollback_here(second, admin)
    assert run.status == RunStatus.SUCCEEDED, run.message
    db.session.refresh(second)
    assert (second.status, second.record_count, second.reason) == (EnvelopeStatus.ROLLED_BACK, 0,
                                                                   f"Rolled back by {admin.username}.")
    remaining = [row for row in project_state(project) if row.envelope_id != third.id]
    assert remaining == before
    _rollback_here(third, admin)
    assert project_state(project) == before
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "rolled back",
                                                      AuditEvent.object_id == second.id)) is not None


def test_a_rollback_that_fails_changes_nothing(app, project, admin, monkeypatch):
    process(project, admin, make_zip({"people.csv": people(*PEOPLE)}), "first.zip")
    second = process(project, admin, make_zip({"people.csv": people("N1,Anna,Smith,1980-04-02,F,SW1A 1AA")}))
    before = project_state(project)
    from webapp.linkage import grouping

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(grouping, "group_ids", broken)
    run = _rollback_here(second, admin)
    assert (run.status, run.message) == (RunStatus.FAILED, "RuntimeError: disk full")
    db.session.expire_all()
    assert project_state(project) == before
    assert db.session.get(Envelope, second.id).status == EnvelopeStatus.SUCCESS


# --- the demo --------------------------------------------------------------------------------------------

def test_the_demo_project_has_two_processed_envelopes_one_with_errors(app, admin):
    import time

    started = time.monotonic()
    assert demo.seed(admin) == {"envelopes": 2}
    took = time.monotonic() - started
    assert demo.seed(admin) == {"envelopes": 0}
    project = db.session.scalar(select(Domain).where(Domain.name == "Registry L"))
    envelopes = db.session.scalars(select(Envelope).where(Envelope.project_id == project.id).order_by(Envelope.id)).all()
    assert [e.status for e in envelopes] == [EnvelopeStatus.SUCCESS, EnvelopeStatus.ERRORS]
    assert [e.record_count for e in envelopes] == [40, 30]
    reasons = notes(envelopes[1])
    assert reasons[f"id already in the project, brought by envelope #{envelopes[0].id} “registry-2023.zip”"][1] == 1
    assert {"dob not a date", "no first name or no surname",
            "id repeated in the envelope (the first row with it is loaded)"} <= set(reasons)
    runs = db.session.scalars(select(Run).where(Run.envelope_id.in_([e.id for e in envelopes]))).all()
    assert len(runs) == 10 and all(run.finished_at for run in runs)
    print(f"demo seed took {took:.2f} s")


# --- through a real worker ----------------------------------------------------------------------------------

def _upload(project, admin, content: bytes, name: str) -> Envelope:
    return upload.receive(admin, project, FileStorage(io.BytesIO(content), filename=name))


def _status(envelope_id):
    def read():
        db.session.expire_all()
        envelope = db.session.get(Envelope, envelope_id)
        return envelope.status if envelope.status not in (EnvelopeStatus.SUCCESS_ACTIVE,
                                                         EnvelopeStatus.ERRORS_ACTIVE) else None
    return read


def test_through_the_worker_good_bad_and_unsafe_envelopes(app, project, admin, worker):
    good = _upload(project, admin, make_zip({"people.csv": people(*PEOPLE)}), "good.zip")
    rows = _upload(project, admin, people("P1,Anna,Smith,1980-04-02,F,", "Q1,Eve,Stone,31/02/1991,F,",
                                          "Q2,Finn,Hart,1988-08-08,M,",
                                          header="id,first_name,surname,dob,sex,postcode").encode(), "rows.csv")
    slip = _upload(project, admin, make_zip({"people.csv": people(*PEOPLE), "../../etc/passwd": "x"}), "slip.zip")
    assert wait_for(_status(slip.id), 120, message="the third envelope's end") == EnvelopeStatus.CORRUPT
    assert wait_for(_status(good.id), 5) == EnvelopeStatus.SUCCESS
    assert wait_for(_status(rows.id), 5) == EnvelopeStatus.ERRORS
    db.session.expire_all()
    assert "unsafe path, “../../etc/passwd”" in db.session.get(Envelope, slip.id).reason
    assert set(notes(db.session.get(Envelope, rows.id))) >= {
        "dob not a date", f"id already in the project, brought by envelope #{good.id} “good.zip”"}

    def slip_runs():
        db.session.expire_all()
        runs = db.session.scalars(select(Run).where(Run.envelope_id == slip.id)).all()
        return {run.args.split()[0]: run.status for run in runs} if all(run.is_final for run in runs) else None

    assert wait_for(slip_runs, 20, message="the later steps cancelled") == {
        "step=validate": RunStatus.FAILED, "step=load": RunStatus.CANCELLED, "step=match": RunStatus.CANCELLED,
        "step=group": RunStatus.CANCELLED, "step=report": RunStatus.CANCELLED}
    assert db.session.get(Envelope, good.id).record_count == 5
    assert worker.proc.poll() is None


def test_rollback_through_the_worker(app, project, admin, worker):
    from webapp.linkage import chain

    first = _upload(project, admin, make_zip({"people.csv": people(*PEOPLE)}), "first.zip")
    assert wait_for(_status(first.id), 120, message="first envelope") == EnvelopeStatus.SUCCESS
    before = project_state(project)
    second = _upload(project, admin, make_zip({"people.csv": people("N1,Anna,Smith,1980-04-02,F,SW1A 1AA")}),
                     "second.zip")
    assert wait_for(_status(second.id), 120, message="second envelope") == EnvelopeStatus.SUCCESS
    assert project_state(project) != before
    chain.request_rollback(db.session.get(Envelope, second.id), admin)
    assert wait_for(lambda: _status(second.id)() == EnvelopeStatus.ROLLED_BACK, 60, message="rollback")
    db.session.expire_all()
    assert project_state(project) == before
    assert db.session.get(Envelope, second.id).reason == f"Rolled back by {admin.username}."
