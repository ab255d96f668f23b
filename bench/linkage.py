"""Quality and speed of the linkage engine on a synthetic population with known duplicates.

    .venv/bin/python bench/linkage.py                        # 10,000 and 100,000 records
    .venv/bin/python bench/linkage.py --sizes 2000 --fixed   # fixed parameters only, quick
    .venv/bin/python bench/linkage.py --duplicate-rate 0.1 --seed 7

For each size, in a fresh child process (so each peak RSS is that run's own): generate the
population (webapp.linkage.synth), normalise it (webapp.linkage.normalise), find_matches with
new = all and existing = empty, group_ids; then again as two envelopes (first half existing,
second half new: the new-vs-existing path), both halves' pairs grouped together. Printed:
precision, recall and F1 of the pairs and of the groups (every pair of records within a group)
against the truth, seconds per step, and peak RSS. No database, no worker: the load step's
database writes are not in these figures.
"""
import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from formats import peak_rss_mb  # noqa: E402  (VmHWM of this process)


def scores(found: int, right: int, truth: int) -> dict:
    precision = right / found if found else 1.0
    recall = right / truth if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def pair_scores(pairs, truth: set) -> dict:
    found = set(zip(pairs.column("record_id_l").to_pylist(), pairs.column("record_id_r").to_pylist()))
    return scores(len(found), len(found & truth), len(truth))


def group_scores(groups: dict[int, int], persons: list[int], truth: set) -> dict:
    """Pairwise within groups: every two records in one group count as a found pair."""
    sizes = Counter(groups.values())
    within = Counter((groups[i], persons[i - 1]) for i in groups)
    found = sum(n * (n - 1) // 2 for n in sizes.values())
    right = sum(n * (n - 1) // 2 for n in within.values())
    return scores(found, right, len(truth))


def child(size: int, rate: float, seed: int, train: bool) -> dict:
    import pyarrow as pa

    from webapp.linkage.grouping import group_ids
    from webapp.linkage.matching import MatchSettings, find_matches
    from webapp.linkage.synth import person_table, population, true_pairs

    out: dict = {"size": size, "train": train, "log": []}
    started = time.perf_counter()
    records, truth = population(size, duplicate_rate=rate, seed=seed)
    persons = [truth[r["id"]] for r in records]
    expected = true_pairs(records, truth)
    out["generate_s"] = time.perf_counter() - started
    out["true_pairs"] = len(expected)
    out["rss_before_mb"] = peak_rss_mb()

    started = time.perf_counter()
    table = person_table(records)
    out["normalise_s"] = time.perf_counter() - started
    del records
    settings = MatchSettings(train=train)
    empty = table.slice(0, 0)

    started = time.perf_counter()
    pairs = find_matches(table, empty, settings, log=out["log"].append)
    out["match_s"] = time.perf_counter() - started
    started = time.perf_counter()
    groups = group_ids(table.column("record_id"), pairs)
    out["group_s"] = time.perf_counter() - started
    out["pairs"] = pairs.num_rows
    out["groups"] = len(set(groups.values()))
    out["pair_scores"] = pair_scores(pairs, expected)
    out["group_scores"] = group_scores(groups, persons, expected)

    half = size // 2
    first, second = table.slice(0, half), table.slice(half)
    started = time.perf_counter()
    pairs_1 = find_matches(first, empty, settings, log=out["log"].append)
    out["match_half_1_s"] = time.perf_counter() - started
    started = time.perf_counter()
    pairs_2 = find_matches(second, first, settings, log=out["log"].append)
    out["match_half_2_s"] = time.perf_counter() - started
    both = pa.concat_tables([pairs_1, pairs_2])
    ids = both.column("record_id_l").to_pylist()
    out["existing_existing_in_2"] = sum(
        1 for l, r in zip(pairs_2.column("record_id_l").to_pylist(),
                          pairs_2.column("record_id_r").to_pylist()) if r <= half)
    started = time.perf_counter()
    groups_2 = group_ids(table.column("record_id"), both)
    out["group_two_s"] = time.perf_counter() - started
    out["two_pair_scores"] = pair_scores(both, expected)
    out["two_group_scores"] = group_scores(groups_2, persons, expected)
    out["two_pairs"] = len(ids)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def show(result: dict) -> None:
    r = result
    mode = "trained" if r["train"] else "fixed parameters"
    print(f"\n== {r['size']:,} records, {r['true_pairs']:,} true pairs, {mode}")
    for line in r["log"]:
        print(f"   log: {line}")
    print(f"   generate {r['generate_s']:.1f} s (not part of the chain); RSS after generating "
          f"{r['rss_before_mb']:.0f} MB")
    print(f"   one envelope:  normalise {r['normalise_s']:.2f} s, match {r['match_s']:.2f} s, "
          f"group {r['group_s']:.2f} s -> match+group {r['match_s'] + r['group_s']:.2f} s; "
          f"{r['pairs']:,} pairs, {r['groups']:,} groups")
    for label, key in (("pairs ", "pair_scores"), ("groups", "group_scores")):
        s = r[key]
        print(f"     {label}  precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}")
    print(f"   two envelopes: match first half {r['match_half_1_s']:.2f} s, second half against "
          f"the first {r['match_half_2_s']:.2f} s, group {r['group_two_s']:.2f} s; "
          f"{r['two_pairs']:,} pairs, existing-existing pairs in the second: "
          f"{r['existing_existing_in_2']}")
    for label, key in (("pairs ", "two_pair_scores"), ("groups", "two_group_scores")):
        s = r[key]
        print(f"     {label}  precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}")
    print(f"   peak RSS {r['peak_rss_mb']:.0f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--duplicate-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fixed", action="store_true", help="fixed parameters only")
    parser.add_argument("--trained", action="store_true", help="trained model only")
    parser.add_argument("--child", nargs=4, metavar=("SIZE", "RATE", "SEED", "TRAIN"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, rate, seed, train = args.child
        print(json.dumps(child(int(size), float(rate), int(seed), train == "1")))
        return 0
    modes = [True] if args.trained else [False] if args.fixed else [True, False]
    print(f"python {sys.version.split()[0]}; duplicate rate {args.duplicate_rate}, seed {args.seed}")
    for size in args.sizes:
        for train in modes:
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(size), str(args.duplicate_rate),
                 str(args.seed), "1" if train else "0"], capture_output=True, text=True)
            if done.returncode:
                print(done.stderr[-3000:])
                return 1
            show(json.loads(done.stdout.strip().splitlines()[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
