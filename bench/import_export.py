"""Import and export of clinical data through the database: a synthetic ODM file imported by the
loader, then 1,000,000 values of a dataset exported in each format by the export job's code.

    .venv/bin/python bench/import_export.py                   # SQLite, a ~200 MB file, 1,000,000 values
    .venv/bin/python bench/import_export.py --quick           # a ~5 MB file, 100,000 values
    .venv/bin/python bench/import_export.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/import_export.py --import-mb 800   # the file four times larger
    .venv/bin/python bench/import_export.py --import-only     # the import alone

A private database is made for the run (bench/common.py) and dropped at the end. Every figure
comes from a fresh child process, so each peak RSS is that measurement's alone: `base` is the
process with the app created, `peak` its highest resident memory during the work (VmHWM).

Import: the file (--import-mb) is generated with webapp/formats/synth.py and imported by
`loader.import_file` into a study in one transaction, as the import job does: MB/s, values/s,
and the peak RSS of the process that parses the file (clinical/parsing.py; forked, so it
counts the importer's pages it shares).
Export: a second study gets exactly --export-values values (synthetic subjects of 36 values:
3 events x 12 items), imported the same way; a dataset selects all its items, and `run_export`
(the export job type's function, through a RunContext) writes it in each format to the files
folder: seconds, MB written, peak RSS.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, BenchError, new_parser, run_main  # noqa: E402
from formats import peak_rss_mb  # noqa: E402

VALUES_PER_SUBJECT = 36  # synth: 3 events x 12 items
FORMATS = ("csv", "tsv", "json", "odm")


# --- children: each measures one thing in a fresh process ---------------------------------------

def _app():
    from config import Config
    from webapp import create_app

    app = create_app(Config)
    app.app_context().push()
    return app


def child_import(path: str, domain_id: int) -> dict:
    _app()
    from webapp.clinical.loader import Actor, import_file
    from webapp.extensions import db

    base = peak_rss_mb()
    started = time.perf_counter()
    stats = import_file(path, domain_id, Actor(None, "bench"))
    db.session.commit()
    seconds = time.perf_counter() - started
    parser = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the parsing process (KiB on Linux)
    return {"seconds": seconds, "bytes": stats.bytes, "values": stats.inserted, "subjects": stats.subjects,
            "base": base, "peak": peak_rss_mb(), "parser": parser}


def child_export(job_id: int, run_id: int, dataset_id: int, fmt: str) -> dict:
    app = _app()
    from webapp.execution.context import RunContext
    from webapp.jobtypes.export_dataset import run_export

    ctx = RunContext(run_id=run_id, job_id=job_id, live=None, files_dir=app.config["FILES_DIR"])
    base = peak_rss_mb()
    started = time.perf_counter()
    run_export(ctx, dataset_id, fmt)
    seconds = time.perf_counter() - started
    [written] = ctx.files
    os.remove(os.path.join(app.config["FILES_DIR"], written.path))
    return {"seconds": seconds, "values": ctx.stats["values"], "bytes": written.size, "base": base,
            "peak": peak_rss_mb()}


def run_child(*args) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode != 0:
        raise BenchError(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the run -------------------------------------------------------------------------------------

def make_file(path: Path, subjects: int, study_oid: str) -> float:
    from webapp.formats.synth import write_synthetic_odm

    started = time.perf_counter()
    with open(path, "wb") as out:
        write_synthetic_odm(out, subjects=subjects, study_oid=study_oid)
    return time.perf_counter() - started


def study(name: str, oid: str) -> int:
    from webapp.extensions import db
    from webapp.models import Domain

    domain = Domain(name=name, oid=oid)
    db.session.add(domain)
    db.session.commit()
    return domain.id


def import_figures(label, figures) -> str:
    seconds = figures["seconds"]
    return (f"  {label:<26} {figures['bytes'] / 1e6:8.1f} MB {seconds:7.2f} s {figures['bytes'] / seconds / 1e6:6.1f} MB/s "
            f"{figures['values'] / seconds:10,.0f} values/s   RSS base {figures['base']:4.0f} MB, "
            f"peak {figures['peak']:4.0f} MB, parsing process peak {figures['parser']:4.0f} MB")


def body(options):
    def run(env):
        from webapp.extensions import db
        from webapp.formats.synth import subjects_for_size
        from webapp.models import Dataset, DatasetItem, Job, Run, Scope, Trigger
        from webapp.models.clinical import ClinicalOid, ItemDef, OidKind

        print(f"{env.database.kind}, Python {sys.version.split()[0]}, {os.cpu_count()} cores, load "
              f"{os.getloadavg()[0]:.2f}")
        path = env.tmp / "import.xml"
        subjects = subjects_for_size(options.import_mb)
        seconds = make_file(path, subjects, "BENCH-IMPORT")
        print(f"generated {path.stat().st_size / 1e6:.1f} MB, {subjects * VALUES_PER_SUBJECT:,} values "
              f"in {seconds:.1f} s")
        print("Import (loader.import_file, one transaction):")
        print(import_figures("new values", run_child("import", path, study("Import study", "BENCH-IMPORT"))))
        path.unlink()
        if options.import_only:
            return

        export_subjects = math.ceil(options.export_values / VALUES_PER_SUBJECT)
        make_file(path, export_subjects, "BENCH-EXPORT")
        domain_id = study("Export study", "BENCH-EXPORT")
        print(import_figures("export study's values", run_child("import", path, domain_id)))
        path.unlink()
        oids = {(o.kind, o.oid): o.id for o in db.session.scalars(db.select(ClinicalOid).where(
            ClinicalOid.domain_id == domain_id))}
        items = db.session.scalars(db.select(ItemDef.id).where(ItemDef.domain_id == domain_id)).all()
        form, group = oids[OidKind.FORM, "F_VITALS"], oids[OidKind.GROUP, "IG_VITALS"]
        dataset = Dataset(domain_id=domain_id, name="Bench vitals", items=[
            DatasetItem(event_id=event, form_id=form, group_id=group, item_id=item)
            for (kind, _), event in oids.items() if kind == OidKind.EVENT for item in items])
        job = Job(name="Bench export", job_type="export_dataset", scope=Scope.DOMAIN, domain_id=domain_id,
                  params={"dataset": 0})
        db.session.add_all([dataset, job])
        db.session.flush()
        run_row = Run(job_id=job.id, trigger=Trigger.HAND)
        db.session.add(run_row)
        db.session.commit()
        total = export_subjects * VALUES_PER_SUBJECT
        print(f"Export of {total:,} values ({export_subjects:,} subjects, {len(items) * 3} dataset items), "
              f"run_export to the files folder:")
        for fmt in FORMATS:
            figures = run_child("export", job.id, run_row.id, dataset.id, fmt)
            if figures["values"] != total:
                raise BenchError(f"{fmt}: {figures['values']:,} values exported, not {total:,}")
            print(f"  {fmt:<5} {figures['seconds']:6.2f} s {figures['values'] / figures['seconds']:10,.0f} values/s "
                  f"{figures['bytes'] / 1e6:7.1f} MB   RSS base {figures['base']:4.0f} MB, "
                  f"peak {figures['peak']:4.0f} MB")
    return run


def main(argv=None) -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="a ~5 MB file and 100,000 values")
    parser.add_argument("--import-mb", type=float, help="size of the imported file (default 200, quick 5)")
    parser.add_argument("--export-values", type=int, help="values exported (default 1,000,000, quick 100,000)")
    parser.add_argument("--import-only", action="store_true", help="the import alone, no export")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        kind, *args = options.child
        if kind == "import":
            figures = child_import(args[0], int(args[1]))
        else:
            figures = child_export(int(args[0]), int(args[1]), int(args[2]), args[3])
        print(json.dumps(figures))
        return 0
    options.import_mb = options.import_mb or (5 if options.quick else 200)
    options.export_values = options.export_values or (100_000 if options.quick else 1_000_000)
    return run_main(options, body(options))


if __name__ == "__main__":
    sys.exit(main())
