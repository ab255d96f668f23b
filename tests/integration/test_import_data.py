"""Import jobs (S0 6.5.1) with real files in a temporary import directory and a real worker:
files move to processed/ or failed/, a file is all or nothing, bad files are refused with the
reason, updates are audited old -> new under the right user."""
import os
from pathlib import Path

import pytest
from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from tests.factories import make_domain, make_job, make_user
from tests.unit.test_odm_parse_process import children_of
from webapp.clinical.loader import Actor, ImportRefused, import_file
from webapp.execution import dispatch
from webapp.execution.worker import FiretimeWorker
from webapp.extensions import db, redis_client
from webapp.formats.odm import read_values
from webapp.formats.synth import write_synthetic_odm
from webapp.jobtypes import registry
from webapp.models import (AuditEvent, ClinicalOid, ClinicalRecord, Domain, ItemDef, ItemValue, Job, Run, RunStatus,
                           Subject)
from webapp.models.types import utcnow

ODM_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" FileOID="F1" CreationDateTime="2026-11-22T10:00:00">\n')


def clinical(study_oid, subjects: dict) -> str:
    """subjects: key -> {item oid: value}; one event, form and group each."""
    body = [f'<ClinicalData StudyOID="{study_oid}" MetaDataVersionOID="v1">']
    for key, items in subjects.items():
        body.append(f'<SubjectData SubjectKey="{key}"><StudyEventData StudyEventOID="SE.BASE">'
                    '<FormData FormOID="F.VITALS"><ItemGroupData ItemGroupOID="IG.VS">')
        body += [f'<ItemData ItemOID="{oid}" Value="{value}"/>' for oid, value in items.items()]
        body.append("</ItemGroupData></FormData></StudyEventData></SubjectData>")
    body.append("</ClinicalData>")
    return "\n".join(body)


def odm(study_oid, subjects) -> str:
    return ODM_HEAD + clinical(study_oid, subjects) + "\n</ODM>\n"


@pytest.fixture
def import_dir(ctx):
    base = Path(current_app.config["IMPORT_DIR"])
    base.mkdir(parents=True, exist_ok=True)
    for entry in base.iterdir():  # each test starts with an empty folder
        _remove(entry)
    yield base
    for entry in base.iterdir():
        _remove(entry)


def _remove(path: Path):
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove(child)
        path.rmdir()
    else:
        path.unlink()


def study(oid="STUDY-A", name=None, parent=None) -> int:
    """A domain with that StudyOID; its id (objects do not outlive the worker's session)."""
    domain = make_domain(name or f"Study {oid}", parent=db.session.get(Domain, parent) if parent else None)
    domain.oid = oid
    db.session.commit()
    return domain.id


def import_job(domain_id, **fields) -> int:
    return make_job("Import A", job_type="import_data", domain=db.session.get(Domain, domain_id),
                    params=fields.pop("params", {}), **fields).id


def write(folder: Path, name: str, text: str, age: int = 0) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    if age:
        stamp = path.stat().st_mtime - age
        os.utime(path, (stamp, stamp))
    return path


def run_import(job_id, user=None) -> Run:
    run_id = dispatch.request_run(db.session.get(Job, job_id), user=user).id
    FiretimeWorker(registry.queue_names(), connection=redis_client.conn).work(burst=True)
    return db.session.get(Run, run_id)


def values(domain_id) -> dict:
    rows = db.session.execute(select(Subject.subject_key, ItemDef.oid, ItemValue.value)
                              .join(ClinicalRecord, ClinicalRecord.id == ItemValue.record_id)
                              .join(Subject, Subject.id == ClinicalRecord.subject_id)
                              .join(ItemDef, ItemDef.id == ItemValue.item_id)
                              .where(Subject.domain_id == domain_id)).all()
    return {(subject, item): value for subject, item, value in rows}


def test_an_import_run_imports_each_waiting_file_oldest_first_and_moves_it_to_processed(import_dir):
    domain = study()
    job = import_job(domain)
    write(import_dir, "second.xml", odm("STUDY-A", {"S2": {"I.HR": "70"}}), age=10)
    write(import_dir, "first.xml", odm("STUDY-A", {"S1": {"I.HR": "60", "I.SBP": "120"}}), age=20)
    write(import_dir, "notes.txt", "not matched by *.xml")
    run = run_import(job)
    assert run.status == RunStatus.SUCCEEDED, run.message
    assert values(domain) == {("S1", "I.HR"): "60", ("S1", "I.SBP"): "120", ("S2", "I.HR"): "70"}
    today = utcnow().date().isoformat()
    assert sorted(p.name for p in (import_dir / "processed" / today).iterdir()) == ["first.xml", "second.xml"]
    assert sorted(p.name for p in import_dir.iterdir()) == ["notes.txt", "processed"]
    assert [f["file"] for f in run.stats["files"]] == ["first.xml", "second.xml"]  # oldest first
    first = run.stats["files"][0]
    assert (first["subjects"], first["events"], first["values_inserted"], first["values_updated"],
            first["values_unchanged"]) == (1, 1, 2, 0, 0)
    assert first["bytes"] == (import_dir / "processed" / today / "first.xml").stat().st_size


def test_reimporting_updates_changed_values_audited_old_to_new_under_the_run_as_user(import_dir):
    domain = study()
    operator_id = make_user(username="import-operator").id
    job = import_job(domain, run_as_id=operator_id)
    write(import_dir, "a.xml", odm("STUDY-A", {"S1": {"I.HR": "60", "I.SBP": "120"}}))
    assert run_import(job).status == RunStatus.SUCCEEDED
    write(import_dir, "b.xml", odm("STUDY-A", {"S1": {"I.HR": "65", "I.SBP": "120"}, "S2": {"I.HR": "80"}}))
    run = run_import(job, user=make_user(username="clicker"))
    assert run.status == RunStatus.SUCCEEDED
    counts = run.stats["files"][0]
    assert (counts["values_inserted"], counts["values_updated"], counts["values_unchanged"]) == (1, 1, 1)
    assert values(domain)[("S1", "I.HR")] == "65"
    [audit] = db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "item_value")).all()
    assert (audit.actor_name, audit.actor_id, audit.run_id, audit.domain_id) == ("import-operator", operator_id,
                                                                                 run.id, domain)
    assert (audit.before, audit.after) == ({"value": "60"}, {"value": "65"})
    assert audit.object_name == "S1 / SE.BASE[1] / F.VITALS / IG.VS[1] / I.HR"


def test_without_a_run_as_user_changes_are_audited_under_whoever_started_the_run(import_dir):
    domain = study()
    job = import_job(domain)
    write(import_dir, "a.xml", odm("STUDY-A", {"S1": {"I.HR": "60"}}))
    run_import(job)
    write(import_dir, "b.xml", odm("STUDY-A", {"S1": {"I.HR": "61"}}))
    clicker = make_user(username="clicker-2")
    clicker_id = clicker.id
    run_import(job, user=clicker)
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.object_type == "item_value"))
    assert (audit.actor_name, audit.actor_id) == ("clicker-2", clicker_id)


def test_a_file_that_fails_halfway_leaves_nothing_and_goes_to_failed_with_the_reason(import_dir):
    domain = study()
    job = import_job(domain)
    with open(import_dir / "big.xml", "wb") as out:
        write_synthetic_odm(out, subjects=3000, study_oid="STUDY-A")  # several batches
    data = (import_dir / "big.xml").read_bytes()
    (import_dir / "big.xml").write_bytes(data[: len(data) - 2000])  # cut short: the error comes at the end
    write(import_dir, "good.xml", odm("STUDY-A", {"S9": {"I.HR": "77"}}), age=-5)
    run = run_import(job)
    assert run.status == RunStatus.FAILED
    assert values(domain) == {("S9", "I.HR"): "77"}  # the truncated file's values: none kept
    assert db.session.scalar(select(func.count()).select_from(Subject).where(Subject.subject_key != "S9")) == 0
    reason = (import_dir / "failed" / "big.xml.error.txt").read_text()
    assert "line" in reason and (import_dir / "failed" / "big.xml").exists()
    assert "big.xml was not imported" in run.message


@pytest.mark.parametrize("name, content, expected", [
    ("laughs.xml", '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
                   '<ODM>&lol2;</ODM>', "DOCTYPE"),
    ("xxe.xml", '<?xml version="1.0"?><!DOCTYPE ODM [<!ENTITY x SYSTEM "file:///etc/passwd">]><ODM>&x;</ODM>',
     "DOCTYPE"),
    ("empty.xml", "", "empty"),
    ("rss.xml", '<?xml version="1.0"?><rss version="2.0"><channel/></rss>', "rss"),
    ("latin.xml", '<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3">'
                  '<ClinicalData StudyOID="STUDY-A"><SubjectData SubjectKey="Bj\xf6rk"/></ClinicalData></ODM>',
     "line"),
    ("other-study.xml", odm("STUDY-B", {"S1": {"I.HR": "1"}}), "StudyOID is 'STUDY-B'"),
])
def test_bad_files_are_refused_whole_with_a_clear_reason(import_dir, name, content, expected):
    domain = study()
    job = import_job(domain)
    path = import_dir / name
    path.write_bytes(content.encode("latin-1") if name == "latin.xml" else content.encode("utf-8"))
    run = run_import(job)
    assert run.status == RunStatus.FAILED
    assert values(domain) == {}
    reason = (import_dir / "failed" / f"{name}.error.txt").read_text()
    assert expected in reason, reason
    assert not path.exists()


def test_a_site_file_goes_into_the_site_and_a_value_too_long_for_its_item_is_refused(import_dir):
    parent = study("STUDY-A")
    site = study("SITE-1", name="Site 1", parent=parent)
    job = import_job(parent)
    write(import_dir, "site.xml", odm("SITE-1", {"S1": {"I.HR": "60"}}))
    assert run_import(job).status == RunStatus.SUCCEEDED
    assert values(site) == {("S1", "I.HR"): "60"} and values(parent) == {}

    long_item = (ODM_HEAD + '<Study OID="STUDY-A"><MetaDataVersion OID="v1" Name="v1">'
                 '<ItemDef OID="I.CODE" Name="Code" DataType="text" Length="3"/></MetaDataVersion></Study>'
                 + clinical("STUDY-A", {"S1": {"I.CODE": "ABCDEF"}}) + "</ODM>")
    write(import_dir, "long.xml", long_item)
    assert run_import(job).status == RunStatus.FAILED
    assert "I.CODE" in (import_dir / "failed" / "long.xml.error.txt").read_text()
    assert values(parent) == {}


def test_the_subdirectory_must_stay_inside_the_import_directory(import_dir, tmp_path):
    from webapp.jobtypes.registry import InvalidArguments

    import_type = registry.get("import_data")
    (import_dir / "site-1").mkdir()
    (import_dir / "out").symlink_to(tmp_path)
    assert import_type.load_params({"subdirectory": "site-1"})["subdirectory"] == "site-1"
    for bad, why in (("../etc", ".."), ("/etc", "absolute"), ("out", "outside"), ("missing", "no folder"),
                     ("a\x00b", "at most")):
        with pytest.raises(InvalidArguments, match=why):
            import_type.load_params({"subdirectory": bad})
    with pytest.raises(InvalidArguments, match="without a path"):
        import_type.load_params({"file_pattern": "../*.xml"})


def test_a_missing_import_folder_fails_the_run_with_the_reason(import_dir):
    domain = study()
    (import_dir / "gone").mkdir()
    job = import_job(domain, params={"subdirectory": "gone"})
    run_id = dispatch.request_run(db.session.get(Job, job)).id
    (import_dir / "gone").rmdir()  # after the run was queued: it fails with the reason
    FiretimeWorker(registry.queue_names(), connection=redis_client.conn).work(burst=True)
    run = db.session.get(Run, run_id)
    assert run.status == RunStatus.FAILED
    assert "There is no folder “gone” in the import directory" in run.message
    with pytest.raises(registry.InvalidArguments, match="no folder"):  # and Run now says so at once
        dispatch.request_run(db.session.get(Job, job))


def test_values_with_tabs_newlines_backslashes_and_nulls_are_kept_exactly(import_dir):
    domain = study()
    job = import_job(domain)
    text = (ODM_HEAD + '<ClinicalData StudyOID="STUDY-A"><SubjectData SubjectKey="S1"><StudyEventData '
            'StudyEventOID="SE.BASE"><FormData FormOID="F.X"><ItemGroupData ItemGroupOID="IG.X">'
            '<ItemData ItemOID="I.NOTE" Value="a&#9;b&#10;c\\d &lt;é&gt;"/><ItemData ItemOID="I.EMPTY" IsNull="Yes"/>'
            '</ItemGroupData></FormData></StudyEventData></SubjectData></ClinicalData></ODM>')
    write(import_dir, "special.xml", text)
    assert run_import(job).status == RunStatus.SUCCEEDED
    assert values(domain) == {("S1", "I.NOTE"): "a\tb\nc\\d <é>", ("S1", "I.EMPTY"): None}


def every_key(domain_id) -> dict:
    """(subject, event, event repeat, form, group, group repeat, item) -> value, as stored."""
    event, form, group = aliased(ClinicalOid), aliased(ClinicalOid), aliased(ClinicalOid)
    rows = db.session.execute(
        select(Subject.subject_key, event.oid, ClinicalRecord.event_repeat, form.oid, group.oid,
               ClinicalRecord.group_repeat, ItemDef.oid, ItemValue.value)
        .join(ClinicalRecord, ClinicalRecord.id == ItemValue.record_id)
        .join(Subject, Subject.id == ClinicalRecord.subject_id)
        .join(event, event.id == ClinicalRecord.event_id).join(form, form.id == ClinicalRecord.form_id)
        .join(group, group.id == ClinicalRecord.group_id).join(ItemDef, ItemDef.id == ItemValue.item_id)
        .where(Subject.domain_id == domain_id)).all()
    return {tuple(row[:7]): row[7] for row in rows}


def test_a_file_of_several_batches_is_stored_exactly_as_the_reader_reads_it(import_dir):
    domain = study("BIG")
    job = import_job(domain)
    with open(import_dir / "big.xml", "wb") as out:
        write_synthetic_odm(out, subjects=1500, study_oid="BIG")  # 54,000 values: subjects cut by batch ends
    expected = {row[:7]: row[7] for row in read_values(import_dir / "big.xml")}
    run = run_import(job)
    assert run.status == RunStatus.SUCCEEDED, run.message
    assert run.stats["files"][0]["values_inserted"] == len(expected) == 54_000
    assert every_key(domain) == expected
    write(import_dir, "again.xml", (import_dir / "processed" / utcnow().date().isoformat() / "big.xml").read_text())
    again = run_import(job).stats["files"][0]  # the same file again: every value compared, none written
    assert (again["values_inserted"], again["values_updated"], again["values_unchanged"]) == (0, 0, 54_000)


def test_a_file_refused_while_it_is_being_parsed_leaves_no_parsing_process(import_dir):
    domain = study()
    path = import_dir / "other.xml"
    with open(path, "wb") as out:
        write_synthetic_odm(out, subjects=3000, study_oid="STUDY-B")  # refused at its start, parsing goes on
    before = children_of(os.getpid())
    with pytest.raises(ImportRefused, match="STUDY-B"):
        import_file(str(path), domain, Actor(None, "test"))
    db.session.rollback()
    assert children_of(os.getpid()) == before
