"""Write a synthetic CDISC ODM 1.3 file of a given size: subjects x study events x items.

    .venv/bin/python bench/odm_synth.py /tmp/odm-200.xml --size-mb 200
    .venv/bin/python bench/odm_synth.py /tmp/odm-small.xml --subjects 50 --study-oid S_A

Streams as it generates (about 0.2 s per 50 MB here); see webapp/formats/synth.py.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp.formats.synth import subjects_for_size, write_synthetic_odm  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the file to write (overwritten)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--size-mb", type=float, help="aim at this size in MB (10^6 bytes)")
    size.add_argument("--subjects", type=int, help="this many subjects (default: 1,000)")
    parser.add_argument("--events", type=int, default=3, help="study events a subject (3)")
    parser.add_argument("--items", type=int, default=12, help="items an event (12)")
    parser.add_argument("--study-oid", default="S_SYNTH")
    parser.add_argument("--no-metadata", action="store_true",
                        help="leave out Study/MetaDataVersion (ItemDefs)")
    options = parser.parse_args(argv)
    if options.size_mb is not None:
        subjects = subjects_for_size(options.size_mb, options.events, options.items)
    else:
        subjects = options.subjects or 1000
    started = time.perf_counter()
    with open(options.path, "wb") as out:
        values = write_synthetic_odm(out, subjects=subjects, events=options.events,
                                     items=options.items, study_oid=options.study_oid,
                                     metadata=not options.no_metadata)
    seconds = time.perf_counter() - started
    size = os.path.getsize(options.path)
    print(f"{options.path}: {size / 1e6:.1f} MB, {subjects:,} subjects, {values:,} values, "
          f"written in {seconds:.1f} s")


if __name__ == "__main__":
    main()
