"""An envelope's whole chain (validate, load, match, group, report) on a synthetic population with
known duplicates, in a database of its own: seconds per step, peak RSS, and precision, recall and F1
of the pairs and of the groups the database ends with.

    .venv/bin/python bench/envelope_chain.py                     # 10,000 and 100,000 records, SQLite
    .venv/bin/python bench/envelope_chain.py --sizes 100000 --fixed
    .venv/bin/python bench/envelope_chain.py --database-url postgresql://postgres@127.0.0.1:5432/test

Each size runs in a child process of its own (its peak RSS is that run's), with a fresh database. The
steps are the real step functions, run one after the other in the child as a worker's work horse
would run them (webapp.linkage.demo.run_here: runs, logs, statistics and files recorded), so the
figures are the chain's own, without RQ's hand-over between steps (milliseconds each).
"""
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, new_parser, run_main  # noqa: E402
from formats import peak_rss_mb  # noqa: E402
from linkage import scores  # noqa: E402

sys.path.insert(0, str(ROOT))


def body(options):
    def run(env):
        import io
        from collections import Counter

        from sqlalchemy import select

        from tests.factories import make_user
        from webapp.extensions import db
        from webapp.linkage import chain, demo, synth, upload
        from webapp.models import Domain
        from webapp.models.linkage import LINKAGE_KIND, LinkageMatch, LinkageRecord
        from webapp.models.settings import set_setting

        set_setting("linkage_train", not options.fixed)
        db.session.commit()
        started = time.perf_counter()
        records, truth = synth.population(options.size, duplicate_rate=options.duplicate_rate, seed=options.seed)
        path = env.tmp / "envelope.zip"
        synth.write_envelope(str(path), records)
        generated = time.perf_counter() - started
        project = Domain(name="Bench registry", kind=LINKAGE_KIND)
        db.session.add(project)
        db.session.commit()
        admin = make_user(username="bench")
        with open(path, "rb") as handle:
            envelope = upload.store(admin, project, "envelope.zip", io.BytesIO(handle.read()))
        runs = demo.run_here(envelope, admin)
        db.session.expire_all()
        steps = {chain.step_of(run): (run.finished_at - run.started_at).total_seconds() for run in runs}
        statuses = {chain.step_of(run): run.status for run in runs}

        keys = dict(db.session.execute(select(LinkageRecord.id, LinkageRecord.record_key)
                                       .where(LinkageRecord.project_id == project.id)).all())
        person = {record_id: truth[key] for record_id, key in keys.items()}
        by_person = Counter(person.values())
        true_pairs = sum(n * (n - 1) // 2 for n in by_person.values())
        found = db.session.execute(select(LinkageMatch.record_l, LinkageMatch.record_r)
                                   .where(LinkageMatch.project_id == project.id)).all()
        right = sum(1 for left, right_ in found if person[left] == person[right_])
        groups = dict(db.session.execute(select(LinkageRecord.id, LinkageRecord.group_id)
                                         .where(LinkageRecord.project_id == project.id)).all())
        sizes = Counter(groups.values())
        within = Counter((groups[i], person[i]) for i in groups)
        group_found = sum(n * (n - 1) // 2 for n in sizes.values())
        group_right = sum(n * (n - 1) // 2 for n in within.values())
        print(json.dumps({
            "size": options.size, "train": not options.fixed, "generate_s": round(generated, 2),
            "steps_s": {step: round(seconds, 2) for step, seconds in steps.items()},
            "chain_s": round(sum(steps.values()), 2), "statuses": statuses,
            "pairs": scores(len(found), right, true_pairs),
            "groups": scores(group_found, group_right, true_pairs),
            "peak_rss_mb": round(peak_rss_mb(), 1), "driver": db.engine.url.drivername}))

    return run


def main(argv=None) -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--sizes", default="10000,100000", help="records per envelope, comma separated")
    parser.add_argument("--fixed", action="store_true", help="fixed parameters (no EM training)")
    parser.add_argument("--duplicate-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, help=argparse_hidden())
    options = parser.parse_args(argv)
    if options.size:  # the child: one size
        return run_main(options, body(options))
    for size in [int(s) for s in options.sizes.split(",")]:
        command = [sys.executable, __file__, "--size", str(size), "--duplicate-rate", str(options.duplicate_rate),
                   "--seed", str(options.seed)] + (["--fixed"] if options.fixed else []) + \
            (["--database-url", options.database_url] if options.database_url else [])
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode or not lines:
            print(f"size {size}: failed\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
            return 1
        result = json.loads(lines[-1])
        steps = "  ".join(f"{step} {seconds:.2f} s" for step, seconds in result["steps_s"].items())
        print(f"{result['driver']}  {size:>7} records  {'trained' if result['train'] else 'fixed'}  "
              f"chain {result['chain_s']:.1f} s  ({steps})  peak RSS {result['peak_rss_mb']:.0f} MB")
        for what in ("pairs", "groups"):
            s = result[what]
            print(f"    {what:<6} precision {s['precision']:.3f}  recall {s['recall']:.3f}  F1 {s['f1']:.3f}")
        if set(result["statuses"].values()) - {"succeeded", "succeeded_with_warnings"}:
            print(f"    steps did not all succeed: {result['statuses']}")
    return 0


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
