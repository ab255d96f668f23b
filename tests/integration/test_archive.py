"""The archive of exported files (S0): each role sees and downloads the exports of its domains
only (another's file is a 404), files stay listed when their job is removed or deleted and when
their run is purged, the list filters, sorts and pages; the system job that deletes orphaned
export files keeps to the retention period and never touches the archive."""
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from flask import current_app
from sqlalchemy import select

from tests.integration.test_datasets import page, people, signed_in, studies  # noqa: F401  (fixtures)
from tests.integration.test_export import export_job, make_dataset, run_export
from tests.integration.test_import_data import import_dir  # noqa: F401  (fixture)
from webapp.execution import dispatch
from webapp.execution.worker import FiretimeWorker
from webapp.extensions import db, redis_client
from webapp.models import Job, Run, RunFile, RunStatus, Setting
from webapp.models.types import utcnow
from webapp.scheduling import sync

B_ITEMS = [("SE.BASE", "F.VS", "IG.VS", "I.HR")]


@pytest.fixture
def exports(studies):
    """One export file of Study A (CSV) and one of Study B (JSON): {key: (file id, bytes)}."""
    made = {}
    for key, fmt, items in (("a", "csv", None), ("b", "json", B_ITEMS)):
        dataset = make_dataset(studies[key], f"Dataset {key.upper()}", *([items] if items else []))
        run = run_export(export_job(studies[key], dataset, fmt, name=f"Export {key.upper()}"))
        assert run.status == RunStatus.SUCCEEDED, run.message
        file = run.files[0]
        made[key] = (file.id, (Path(current_app.config["FILES_DIR"]) / file.path).read_bytes())
    return made


def listed(client, query="") -> list[str]:
    return page(client.get(f"/archive/{query}")).xpath('//table[contains(@class, "archive")]/tbody/tr/td[1]/a/text()')


@pytest.mark.parametrize("role, sees", [("superadmin", {"a", "b"}), ("sysadmin", {"a"}), ("admin_a", {"a"}),
                                        ("admin_b", {"b"}), ("admin_site", set())])
def test_each_role_sees_and_downloads_the_exports_of_its_domains_only(ctx, exports, signed_in, role, sees):
    client = signed_in(role)
    names = {key: db.session.get(RunFile, file_id).name for key, (file_id, _) in exports.items()}
    assert sorted(listed(client)) == sorted(names[key] for key in sees)
    for key, (file_id, content) in exports.items():
        response = client.get(f"/runs/files/{file_id}")
        if key in sees:
            assert response.status_code == 200 and response.get_data() == content
            assert "attachment" in response.headers["Content-Disposition"]
        else:
            assert response.status_code == 404 and content not in response.get_data()
    # A guessed id is a 404 like any other.
    assert client.get("/runs/files/987654").status_code == 404


def test_the_archive_lists_name_dataset_format_size_checksum_job_run_and_time(ctx, exports, signed_in):
    client = signed_in("admin_a")
    file = db.session.get(RunFile, exports["a"][0])
    row = page(client.get("/archive/")).get_element_by_id(f"file-{file.id}")
    cells = [cell.text_content().strip() for cell in row.xpath("td")]
    assert cells[:3] == [file.name, "Dataset A", "CSV"]
    assert cells[4] == file.sha256[:12] + "…" and row.xpath("td[5]/code/@title") == [file.sha256]
    assert cells[5] == "Export A" and cells[6] == f"#{file.run_id}"
    assert row.xpath("td[1]/a/@href") == [f"/runs/files/{file.id}"]


def test_files_stay_listed_and_downloadable_when_their_job_is_removed_or_deleted_or_their_run_purged(
        ctx, exports, signed_in):
    file = db.session.get(RunFile, exports["a"][0])
    file_id, name, job_id, run_id = file.id, file.name, file.job_id, file.run_id
    client = signed_in("admin_a")
    token = page(client.get(f"/jobs/{job_id}")).xpath('//input[@name="csrf_token"]/@value')[0]
    assert client.post(f"/jobs/{job_id}/remove", data={"csrf_token": token}).status_code == 302
    assert name in listed(client) and "removed" in page(client.get("/archive/")).get_element_by_id(
        f"file-{file_id}").text_content()
    assert client.post(f"/jobs/{job_id}/delete", data={"csrf_token": token}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Job, job_id).deleted_at is not None
    row = page(client.get("/archive/")).get_element_by_id(f"file-{file_id}")
    assert "Export A" in row.text_content() and "deleted" in row.text_content()
    assert client.get(f"/runs/files/{file_id}").get_data() == exports["a"][1]
    assert signed_in("admin_b").get(f"/runs/files/{file_id}").status_code == 404

    # Purging the run history keeps the archive: the file's run is gone, the file is not.
    sync.ensure_system_jobs()
    db.session.add(Setting(key="retention_days", value=1))
    db.session.get(Run, run_id).created_at = utcnow() - timedelta(days=3)
    db.session.commit()
    purge = db.session.scalar(select(Job).where(Job.job_type == "system.purge_history"))
    purged = run_export(purge.id)
    assert purged.status == RunStatus.SUCCEEDED, purged.message
    db.session.expire_all()
    assert db.session.get(Run, run_id) is None and db.session.get(RunFile, file_id).run_id is None
    row = page(client.get("/archive/")).get_element_by_id(f"file-{file_id}")
    assert "purged" in row.text_content()
    assert client.get(f"/runs/files/{file_id}").get_data() == exports["a"][1]


def test_the_archive_filters_by_dataset_job_format_date_and_text(ctx, exports, signed_in):
    client = signed_in("superadmin")
    a, b = (db.session.get(RunFile, exports[key][0]) for key in ("a", "b"))
    today = utcnow().date().isoformat()
    for query, expected in (("?dataset=Dataset+A", [a.name]), (f"?job={b.job_id}", [b.name]),
                            ("?format=json", [b.name]), ("?format=odm", []), (f"?from={today}", [b.name, a.name]),
                            ("?to=2001-01-01", []), ("?q=export+b", [b.name]), ("?q=DATASET", [b.name, a.name])):
        assert listed(client, query) == expected, query
    doc = page(client.get("/archive/?from=2030-01-01&to=2020-01-01&job=x"))
    assert "swapped" in doc.text_content() and "job filter was ignored" in doc.text_content()
    options = page(client.get("/archive/")).xpath('//select[@name="job"]/option/text()')
    assert options == ["All jobs", "Export A", "Export B"]
    fragment = client.get("/archive/?format=csv", headers={"HX-Request": "true", "HX-Target": "archive-table"})
    assert fragment.get_data(as_text=True).lstrip().startswith('<div id="archive-table"')


def test_the_archive_sorts_and_pages(ctx, exports, signed_in):
    a = db.session.get(RunFile, exports["a"][0])
    for n in range(30):  # more files of the same export, as thirty weekly runs would leave
        db.session.add(RunFile(job_id=a.job_id, run_id=None, name=f"Dataset_A_{n:02d}.csv", path=a.path,
                               size=n, sha256=a.sha256, dataset_id=a.dataset_id, dataset_name="Dataset A",
                               file_format="csv", created_at=a.created_at - timedelta(days=n + 1)))
    db.session.commit()
    client = signed_in("admin_a")
    first = listed(client)
    assert len(first) == 25 and first[0] == a.name and first[1] == "Dataset_A_00.csv"  # newest first
    assert "Page 1 of 2 (31)" in page(client.get("/archive/")).text_content()
    assert listed(client, "?page=2") == [f"Dataset_A_{n:02d}.csv" for n in range(24, 30)]
    assert listed(client, "?sort=size&dir=asc")[:3] == ["Dataset_A_00.csv", "Dataset_A_01.csv", "Dataset_A_02.csv"]
    assert listed(client, "?sort=name&dir=desc")[0] == "Dataset_A_29.csv"


# --- the system job: orphaned files -------------------------------------------------------------

def _file(relative, days_old):
    path = Path(current_app.config["FILES_DIR"]) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("left behind")
    stamp = time.time() - days_old * 86400
    os.utime(path, (stamp, stamp))
    return path


def test_orphaned_export_files_go_after_the_retention_period_and_the_archive_stays(ctx, exports):
    sync.ensure_system_jobs()
    db.session.add(Setting(key="retention_days", value=10))
    db.session.commit()
    archived = Path(current_app.config["FILES_DIR"]) / db.session.get(RunFile, exports["a"][0]).path
    stamp = time.time() - 400 * 86400  # the archive's files are never too old
    os.utime(archived, (stamp, stamp))
    old_orphan = _file("runs/900001/Vitals_20200101_000000.csv", 11)
    young_orphan = _file("runs/900002/Vitals_20260101_000000.csv", 9)
    waiting = dispatch.request_run(db.session.get(Job, db.session.get(RunFile, exports["b"][0]).job_id)).id
    busy = _file(f"runs/{waiting}/being_written.csv", 30)  # a run still queued: never touched
    job = db.session.scalar(select(Job).where(Job.job_type == "export_dataset.orphans"))
    assert (job.system, job.plan) == (True, {"kind": "automatic"})
    run_id = dispatch.request_run(job).id
    # Only the system queue's runs: the waiting export stays queued while the clean-up runs.
    FiretimeWorker(["system"], connection=redis_client.conn).work(burst=True)
    run = db.session.get(Run, run_id)
    assert run.status == RunStatus.SUCCEEDED, run.message
    assert run.stats["files_deleted"] == 1
    assert not old_orphan.exists() and not old_orphan.parent.exists()
    assert young_orphan.exists() and busy.exists() and archived.exists()
    assert db.session.get(Run, waiting).status == RunStatus.QUEUED


def test_the_archive_and_the_datasets_list_make_as_many_statements_for_30_rows_as_for_3(app, ctx, signed_in,
                                                                                       studies):
    from tests.factories import make_domain, make_job
    from tests.integration.test_query_counts import statements
    from webapp.models import Dataset, Domain

    def add(rows):
        for n in range(rows):  # each row with a domain and a job of its own
            site = make_domain(f"Site {rows}-{n}", parent=db.session.get(Domain, studies["a"]))
            job = make_job(f"Export {rows}-{n}", domain=site)
            db.session.add(Dataset(domain_id=site.id, name=f"Dataset {n}"))
            db.session.add(RunFile(job_id=job.id, name=f"f-{rows}-{n}.csv", path="x", dataset_name=f"Dataset {n}",
                                   file_format="csv"))
        db.session.commit()

    client = signed_in("sysadmin")
    counts = {}
    for rows in (3, 27):
        add(rows)
        for path in ("/archive/", "/datasets/"):
            client.get(path)  # warm: the first request of a client loads what every page needs once
            with statements(app) as sent:
                assert client.get(path).status_code == 200
            counts.setdefault(path, []).append(len(sent))
    assert all(few == many for few, many in counts.values()), counts
    assert len(listed(client)) == 25 and len(page(client.get("/datasets/")).xpath("//tbody/tr")) == 25
