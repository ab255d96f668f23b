"""The linkage engine called directly (no worker, no database): find_matches and group_ids."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from webapp.linkage.grouping import group_ids
from webapp.linkage.matching import LinkageError, MatchSettings, find_matches
from webapp.linkage.synth import person_table, population, true_pairs

FIXED = MatchSettings(train=False)
FIELDS = ("first_name", "surname", "dob", "sex", "postcode")


def people(*rows) -> pa.Table:
    """A table of (record_id, first_name, surname, dob, sex, postcode) rows, normalised already."""
    columns = list(zip(*rows))
    return pa.table({"record_id": pa.array(columns[0], pa.int64()),
                     **{field: pa.array(values, pa.string())
                        for field, values in zip(FIELDS, columns[1:])}})


NONE = people((0, "", "", None, "", "")).slice(0, 0)


def pair_set(pairs: pa.Table) -> set[tuple[int, int]]:
    return set(zip(pairs.column("record_id_l").to_pylist(), pairs.column("record_id_r").to_pylist()))


def f1(pairs: pa.Table, truth: set) -> float:
    found = pair_set(pairs)
    right = len(found & truth)
    return 2 * right / (len(found) + len(truth))


# A family at one address (twins among them), a duplicate with a typo'd surname, a person born
# the same day as another, and a duplicate with the names swapped.
FAMILY = people(
    (1, "oliver", "whitfield", "1980-04-12", "M", "LS6 2AB"),
    (2, "emma", "whitfield", "1982-09-30", "F", "LS6 2AB"),
    (3, "jack", "whitfield", "2010-06-01", "M", "LS6 2AB"),
    (4, "harry", "whitfield", "2010-06-01", "M", "LS6 2AB"),       # jack's twin
    (5, "oliver", "whitfeild", "1980-04-12", "M", "LS6 2AB"),      # 1, surname typo'd
    (6, "amara", "okonkwo", "1980-04-12", "F", "N1 9GU"),          # born the day 1 was
    (7, "okonkwo", "amara", "1980-04-12", "F", "N1 9GU"),          # 6, names swapped
)


def test_a_typod_surname_is_found_and_a_family_is_not_merged():
    lines = []
    pairs = find_matches(FAMILY, NONE, FIXED, log=lines.append)
    assert pair_set(pairs) == {(1, 5), (6, 7)}
    assert all(p >= FIXED.threshold for p in pairs.column("match_probability").to_pylist())
    assert any("Fixed parameters" in line for line in lines)
    assert any("2 pair(s)" in line for line in lines)


def test_new_records_are_matched_to_existing_ones_and_existing_pairs_are_left_alone():
    existing = FAMILY.filter(pc.is_in(FAMILY.column("record_id"), pa.array([1, 5, 6])))
    new = people((20, "olivr", "whitfield", "1980-04-12", "M", "LS6 2AB"),
                 (21, "amara", "okonkwo", "1980-04-12", "F", ""),
                 (22, "amara", "okonkwo", "1980-04-12", "F", "N1 9GU"),
                 (3, "jack", "whitfield", "2010-06-01", "M", "LS6 2AB"))
    pairs = find_matches(new, existing, FIXED)
    found = pair_set(pairs)
    # new-existing and new-new, the smaller id left; 1-5 (both existing) is not given again
    assert found == {(1, 20), (5, 20), (6, 21), (6, 22), (21, 22)}
    assert all(l < r for l, r in found)


def test_the_threshold_decides_which_scored_pairs_are_matches():
    loose = find_matches(FAMILY, NONE, MatchSettings(train=False, threshold=0.001))
    # the twins score low (a wholly different first name), yet above 0.001
    assert pair_set(loose) == {(1, 5), (6, 7), (3, 4)}
    assert min(loose.column("match_probability").to_pylist()) >= 0.001
    with pytest.raises(LinkageError, match="threshold"):
        find_matches(FAMILY, NONE, MatchSettings(train=False, threshold=0))


def test_nothing_new_gives_no_pairs():
    assert find_matches(NONE, FAMILY, FIXED).num_rows == 0
    assert find_matches(FAMILY.slice(0, 1), NONE, FIXED).num_rows == 0


@pytest.fixture(scope="module")
def synthetic():
    records, truth = population(2000, duplicate_rate=0.2, seed=11)
    return person_table(records), true_pairs(records, truth)


@pytest.mark.parametrize("train", [True, False])
def test_trained_and_fixed_models_both_find_the_duplicates(synthetic, train):
    table, truth = synthetic
    lines = []
    settings = MatchSettings(train=train, max_pairs_for_u=300_000)
    pairs = find_matches(table, table.slice(0, 0), settings, log=lines.append)
    assert f1(pairs, truth) >= 0.9
    assert any(line.startswith("Trained" if train else "Fixed parameters") for line in lines)


def test_too_few_records_to_train_fall_back_to_the_fixed_parameters():
    lines = []
    pairs = find_matches(FAMILY, NONE, MatchSettings(train=True), log=lines.append)
    assert pair_set(pairs) == {(1, 5), (6, 7)}
    assert any("too few to train" in line for line in lines)


def test_a_failed_training_falls_back_to_the_fixed_parameters(synthetic, monkeypatch):
    from splink.internals.linker_components.training import LinkerTraining

    def broken(*args, **kwargs):
        raise RuntimeError("no convergence here")

    monkeypatch.setattr(LinkerTraining, "estimate_parameters_using_expectation_maximisation", broken)
    table, truth = synthetic
    lines = []
    pairs = find_matches(table, table.slice(0, 0), MatchSettings(max_pairs_for_u=100_000),
                         log=lines.append)
    assert any("Fixed parameters: training failed (RuntimeError: no convergence here)" in line
               for line in lines)
    assert f1(pairs, truth) >= 0.9


def test_backends_other_than_duckdb_are_refused_clearly():
    with pytest.raises(LinkageError, match="Unknown linkage backend 'oracle'"):
        find_matches(FAMILY, NONE, MatchSettings(train=False, backend="oracle"))
    try:
        import pyspark  # noqa: F401
    except ImportError:
        with pytest.raises(LinkageError, match="needs pyspark"):
            find_matches(FAMILY, NONE, MatchSettings(train=False, backend="spark"))


def edges(*pairs) -> pa.Table:
    left, right = zip(*pairs) if pairs else ((), ())
    return pa.table({"record_id_l": pa.array(left, pa.int64()),
                     "record_id_r": pa.array(right, pa.int64()),
                     "match_probability": pa.array([1.0] * len(left), pa.float64())})


def test_groups_are_connected_components_named_by_their_smallest_id():
    groups = group_ids([9, 5, 7, 2, 3, 11, 12], edges((7, 9), (5, 9), (11, 12)))
    assert groups == {5: 5, 7: 5, 9: 5, 2: 2, 3: 3, 11: 11, 12: 11}


def test_records_in_no_pair_are_groups_of_one():
    assert group_ids(pa.array([4, 8], pa.int64()), edges()) == {4: 4, 8: 8}


def test_a_pair_naming_an_unknown_record_is_left_out():
    assert group_ids([1, 2], edges((1, 2), (2, 99))) == {1: 1, 2: 1}


def test_a_group_keeps_its_id_when_a_record_joins_and_after_it_is_removed():
    before_ids, before_pairs = [10, 11, 12, 13], [(10, 12), (11, 13)]
    before = group_ids(before_ids, edges(*before_pairs))
    assert before == {10: 10, 12: 10, 11: 11, 13: 11}
    # record 14 arrives and links both groups into one: the smallest id names it
    joined = group_ids(before_ids + [14], edges(*before_pairs, (12, 14), (13, 14)))
    assert joined == {10: 10, 11: 10, 12: 10, 13: 10, 14: 10}
    # rolled back: 14 and its pairs gone, the groups are exactly as before
    assert group_ids(before_ids, edges(*before_pairs, (12, 14), (13, 14))) == before
    # a record joining one group leaves its id unchanged
    assert group_ids(before_ids + [15], edges(*before_pairs, (13, 15)))[15] == 11


def test_the_synthetic_population_is_repeatable_and_holds_its_duplicates():
    records, truth = population(500, duplicate_rate=0.2, seed=3)
    assert (records, truth) == population(500, duplicate_rate=0.2, seed=3)
    assert len(records) == 500 and len({r["id"] for r in records}) == 500
    assert len(set(truth.values())) == 400          # 100 records are copies of others


def test_an_envelope_holds_a_manifest_and_its_csv_files(tmp_path):
    import csv
    import io
    import json
    import zipfile

    from webapp.linkage.synth import MANIFEST_COLUMNS, write_envelope

    records, _ = population(10, seed=5)
    path = write_envelope(tmp_path / "envelope.zip", records, files=3)
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["format"] == "firetime-envelope/1"
        rows = []
        for entry in manifest["files"]:
            assert entry["columns"] == MANIFEST_COLUMNS and entry["delimiter"] == ","
            text = archive.read(entry["name"]).decode(entry["encoding"])
            rows += list(csv.DictReader(io.StringIO(text), delimiter=entry["delimiter"]))
    assert [entry["name"] for entry in manifest["files"]] == [
        "people-1.csv", "people-2.csv", "people-3.csv"]
    by_id = {row["person_id"]: row for row in rows}
    assert len(by_id) == 10
    for record in records:
        row = by_id[record["id"]]
        assert (row["given"], row["family"], row["birth_date"], row["site"]) == (
            record["first_name"], record["surname"], record["dob"], record["site"])
