"""Speed and memory of the ODM reader and the four export writers (no database).

    .venv/bin/python bench/formats.py                      # 5 MB and 200 MB files, 1,000,000 values
    .venv/bin/python bench/formats.py --large-mb 800       # the 4x file
    .venv/bin/python bench/formats.py --small-mb 1 --large-mb 20 --values 100000   # quick

Every figure comes from a fresh child process (`--child …`), so each peak RSS is that one
measurement's: the interpreter with the modules it needs (`base`) and the peak during the work
(`peak`). Files are generated in a temp dir (or --dir) and deleted at the end unless --keep.

Parsing: OdmReader over the whole file, every value row made (nothing stored), best of
--rounds. `plain loop` is the reference: lxml iterparse with start and end events on the five
data tags, attributes read in a Python loop, subjects cleared as it goes.
Writing: --values synthetic value rows (12 items x 3 events a subject, in export order)
through each writer into a file, with its size and sha256 counted on the way.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited over exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_parse(path: str, rounds: int) -> dict:
    from webapp.formats.odm import OdmReader

    base = peak_rss_mb()
    best = None
    for _ in range(rounds):
        started = time.perf_counter()
        reader = OdmReader(path)
        for _part in reader:
            pass
        seconds = time.perf_counter() - started
        best = seconds if best is None else min(best, seconds)
    return {"seconds": best, "values": reader.values, "subjects": reader.subjects,
            "bytes": reader.bytes_read, "base": base, "peak": peak_rss_mb()}


def child_plain(path: str, rounds: int) -> dict:
    from lxml import etree

    ns = "{http://www.cdisc.org/ns/odm/v1.3}"
    subject_tag, event_tag, form_tag, group_tag, item_tag = (ns + t for t in (
        "SubjectData", "StudyEventData", "FormData", "ItemGroupData", "ItemData"))
    base = peak_rss_mb()
    best = None
    for _ in range(rounds):
        started = time.perf_counter()
        values = 0
        subject = event = event_repeat = form = group = group_repeat = None
        for kind, el in etree.iterparse(path, events=("start", "end"), resolve_entities=False,
                                        tag=(subject_tag, event_tag, form_tag, group_tag,
                                             item_tag)):
            tag = el.tag
            if kind == "start":
                if tag == subject_tag:
                    subject = el.get("SubjectKey")
                elif tag == event_tag:
                    event, event_repeat = el.get("StudyEventOID"), el.get("StudyEventRepeatKey")
                elif tag == form_tag:
                    form = el.get("FormOID")
                elif tag == group_tag:
                    group, group_repeat = el.get("ItemGroupOID"), el.get("ItemGroupRepeatKey")
            elif tag == item_tag:
                _row = (subject, event, event_repeat, form, group, group_repeat,
                        el.get("ItemOID"), el.get("Value"))
                values += 1
            elif tag == subject_tag:
                el.clear()
                while el.getprevious() is not None:
                    del el.getparent()[0]
        seconds = time.perf_counter() - started
        best = seconds if best is None else min(best, seconds)
    return {"seconds": best, "values": values, "bytes": os.path.getsize(path), "base": base,
            "peak": peak_rss_mb()}


def child_write(fmt: str, path: str, count: int) -> dict:
    from webapp.formats import writers
    from webapp.formats.synth import FORM_OID, ITEM_GROUP_OID, synth_items, synth_values

    items = synth_items(12)
    columns = writers.columns_for((FORM_OID, ITEM_GROUP_OID, item.oid) for item in items)
    item_defs = [_item_def(item) for item in items]
    base = peak_rss_mb()
    started = time.perf_counter()
    with open(path, "wb") as file:
        out = writers.DigestingFile(file)
        odm_options = {"item_defs": item_defs} if fmt == "odm" else {}
        rows = writers.write(fmt, out, synth_values(count), columns=columns,
                             study_oid="S_SYNTH", **odm_options)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _row in synth_values(count):
        pass
    source_seconds = time.perf_counter() - started
    return {"seconds": seconds, "source_seconds": source_seconds, "rows": rows,
            "bytes": out.size, "base": base, "peak": peak_rss_mb()}


def _item_def(item):
    from webapp.formats.odm import ItemDef

    return ItemDef(item.oid, item.name, item.data_type, item.length)


def run_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                          text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def make_file(directory: Path, megabytes: float) -> Path:
    from webapp.formats.synth import subjects_for_size, write_synthetic_odm

    path = directory / f"synthetic-{megabytes:g}MB.xml"
    started = time.perf_counter()
    with open(path, "wb") as out:
        values = write_synthetic_odm(out, subjects=subjects_for_size(megabytes))
    print(f"generated {path.name}: {path.stat().st_size / 1e6:.1f} MB, {values:,} values, "
          f"{time.perf_counter() - started:.1f} s")
    return path


def print_parse(label: str, figures: dict) -> None:
    seconds = figures["seconds"]
    print(f"  {label:<22} {figures['bytes'] / 1e6:8.1f} MB {seconds:7.2f} s "
          f"{figures['bytes'] / seconds / 1e6:7.1f} MB/s {figures['values'] / seconds:11,.0f} "
          f"values/s   RSS base {figures['base']:4.0f} MB, peak {figures['peak']:4.0f} MB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-mb", type=float, default=5)
    parser.add_argument("--large-mb", type=float, default=200)
    parser.add_argument("--values", type=int, default=1_000_000, help="values a writer writes")
    parser.add_argument("--rounds", type=int, default=2, help="parse rounds, best kept")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain-loop reference")
    parser.add_argument("--dir", help="where the files go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        kind, *args = options.child
        figures = {"parse": lambda: child_parse(args[0], int(args[1])),
                   "plain": lambda: child_plain(args[0], int(args[1])),
                   "write": lambda: child_write(args[0], args[1], int(args[2]))}[kind]()
        print(json.dumps(figures))
        return
    directory = Path(options.dir or tempfile.mkdtemp(prefix="firetime-formats-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load "
              f"{os.getloadavg()[0]:.2f}")
        print("Parse (OdmReader, every value row made):")
        for megabytes in (options.small_mb, options.large_mb):
            path = make_file(directory, megabytes)
            print_parse("OdmReader", run_child("parse", str(path), str(options.rounds)))
            if not options.no_plain and megabytes == options.large_mb:
                print_parse("plain loop (reference)",
                            run_child("plain", str(path), str(options.rounds)))
            if not options.keep:
                path.unlink()
        print(f"Write {options.values:,} values:")
        for fmt in ("csv", "tsv", "json", "odm"):
            path = directory / f"export.{fmt}"
            figures = run_child("write", fmt, str(path), str(options.values))
            print(f"  {fmt:<5} {figures['seconds']:6.2f} s (making the rows: "
                  f"{figures['source_seconds']:.2f} s) {figures['rows']:>9,} "
                  f"{'values' if fmt == 'odm' else 'rows'} {figures['bytes'] / 1e6:7.1f} MB   "
                  f"RSS base {figures['base']:4.0f} MB, peak {figures['peak']:4.0f} MB")
            if not options.keep:
                path.unlink()
    finally:
        if not options.keep and not options.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
