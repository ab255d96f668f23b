"""Finding pairs of records that are the same person, with Splink (Fellegi-Sunter model).

`find_matches` is a pure function over pyarrow tables: the match step of an envelope calls it
with the envelope's records (`new`) and the project's earlier records (`existing`). Splink runs
on an embedded DuckDB here; the same model runs on Spark (`MatchSettings.backend`).

Why only pairs that involve a new record: pairs among existing records were found when those
records were new, and scoring them again would cost time growing with the project. The
blocking rules carry that condition, so such pairs are never even generated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

FIELDS = ("first_name", "surname", "dob", "sex", "postcode")
PAIR_SCHEMA = pa.schema([("record_id_l", pa.int64()), ("record_id_r", pa.int64()),
                         ("match_probability", pa.float64())])
BACKENDS = ("duckdb", "spark")

# Below this many records EM has too few pairs to learn from: the fixed parameters are used.
MIN_RECORDS_TO_TRAIN = 1_000
# EM rounds before it counts as not converging. Rounds are cheap (over counts of agreement
# patterns); on the bench's data EM on dates of birth converges in about 5, but Splink's
# default of 25 stopped a first name + surname rule tried earlier at 25 of the 60 it needed.
EM_MAX_ITERATIONS = 150
# Pairs EM looks at per training rule (sampled above this), so training time stays bounded.
MAX_PAIRS_FOR_EM = 2_000_000

# Splink reports every step at INFO; the match run's log gets our few lines instead.
logging.getLogger("splink").setLevel(logging.WARNING)


@dataclass(frozen=True)
class MatchSettings:
    threshold: float = 0.9          # match probability at or above which a pair is a match
    train: bool = True              # True: estimate u by random sampling + m by EM; False: fixed parameters
    backend: str = "duckdb"         # "duckdb" here; "spark" documented, refused with a clear error if pyspark is absent
    max_pairs_for_u: int = 1_000_000


class LinkageError(ValueError):
    """A setting the engine cannot honour (unknown backend, Spark not installed...)."""


def find_matches(new: pa.Table, existing: pa.Table, settings: MatchSettings,
                 log: Callable[[str], None] | None = None) -> pa.Table:
    """Pairs (record_id_l, record_id_r, match_probability) at or above the threshold, each pair
    involving at least one record of `new` (new-new and new-existing; never existing-existing, those
    were found when they were new), record_id_l < record_id_r. Tables have columns record_id (int64),
    first_name, surname, dob (string ISO date or null), sex ("M"/"F"/""), postcode (all strings,
    normalised already by normalise.py). `log(msg)` gets a few progress lines (e.g. pairs compared,
    trained or fixed parameters)."""
    log = log or (lambda message: None)
    if not 0 < settings.threshold <= 1:
        raise LinkageError(f"The match threshold must be above 0 and at most 1, not {settings.threshold}.")
    records = _records(new, existing)
    db_api = _db_api(settings.backend)  # first: a backend that cannot run fails every envelope alike
    if new.num_rows == 0 or records.num_rows < 2:
        log(f"{new.num_rows} new record(s) of {records.num_rows}: nothing to compare.")
        return PAIR_SCHEMA.empty_table()
    from splink import Linker  # here: only the match step pays Splink's import (0.25 s)

    linker = Linker(db_api.register(records), _splink_settings(records.num_rows), log_level=None)
    _fit(linker, records.num_rows, settings, log)
    predictions = linker.inference.predict(threshold_match_probability=settings.threshold)
    pairs = _pairs(predictions.as_pyarrow_table())
    log(f"{pairs.num_rows} pair(s) at or above match probability {settings.threshold} "
        f"among {new.num_rows} new and {existing.num_rows} existing record(s).")
    return pairs


def _records(new: pa.Table, existing: pa.Table) -> pa.Table:
    """One table of both, with `is_new` (1/0) and every empty string made null, as Splink
    counts null, not "", as missing."""
    parts = []
    for table, flag in ((new, 1), (existing, 0)):
        columns = {"record_id": table.column("record_id").cast(pa.int64())}
        for field in FIELDS:
            values = table.column(field).cast(pa.string())
            columns[field] = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        columns["is_new"] = pa.array([flag] * table.num_rows, pa.int8())
        parts.append(pa.table(columns))
    return pa.concat_tables(parts)


def _pairs(predictions: pa.Table) -> pa.Table:
    """Splink's predictions reduced to the three columns of PAIR_SCHEMA, smaller id left."""
    left, right = predictions.column("record_id_l"), predictions.column("record_id_r")
    swap = pc.greater(left, right)
    return pa.table({
        "record_id_l": pc.if_else(swap, right, left).cast(pa.int64()),
        "record_id_r": pc.if_else(swap, left, right).cast(pa.int64()),
        "match_probability": predictions.column("match_probability").cast(pa.float64()),
    }, schema=PAIR_SCHEMA)


def _db_api(backend: str):
    """The Splink database API of `backend`, importing only the chosen one."""
    if backend == "duckdb":
        from splink.backends.duckdb import DuckDBAPI

        return DuckDBAPI()
    if backend == "spark":
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise LinkageError("The Spark backend needs pyspark, which is not installed here "
                               "(pip install pyspark); use the duckdb backend.") from None
        from splink.backends.spark import SparkAPI, similarity_jar_location

        # A cluster's session (spark-submit, Databricks) is used as it is: it must have been
        # given Splink's similarity jar (Jaro-Winkler, Damerau-Levenshtein). A local one gets it.
        session = SparkSession.getActiveSession() or SparkSession.builder.config(
            "spark.jars", similarity_jar_location()).getOrCreate()
        return SparkAPI(spark_session=session)
    raise LinkageError(f"Unknown linkage backend {backend!r}: choose one of {', '.join(BACKENDS)}.")


# --- The model -----------------------------------------------------------------------------
#
# Blocking (which pairs are scored at all), each rule only for pairs with a new record:
# - surname + date of birth: the rule; most duplicates agree on both.
# - first name + date of birth: a surname changed (marriage) or mistyped.
# - surname + postcode: a date of birth mistyped, swapped or missing.
# - first name + postcode: a surname changed or mistyped *and* a date wrong or missing.
# - first name + surname: date of birth wrong or missing *and* moved house.
# - date of birth + postcode: both names mistyped.
# - surname + year of birth: first name mistyped *and* day or month wrong *and* moved.
# - first name and surname swapped (each equal to the other's other name).
# All are equality joins (hash joins in DuckDB and Spark), each admitting few pairs: a
# household shares a surname and a postcode, a name and a date of birth are rarely shared.
# Each pair is scored once, whichever rules admit it (Splink removes the repeats).
BLOCKING_COLUMNS = [("surname", "dob"), ("first_name", "dob"), ("surname", "postcode"),
                    ("first_name", "postcode"), ("first_name", "surname"), ("dob", "postcode"),
                    ("surname", "substr(dob, 1, 4)")]
NAMES_SWAPPED = "l.first_name = r.surname AND l.surname = r.first_name"
INVOLVES_NEW = "l.is_new = 1 OR r.is_new = 1"

# EM learns m on pairs agreeing on the date of birth: names, sex and postcode then tell the
# duplicates (agreeing) from people born the same day (disagreeing), a clean split. The date of
# birth's own m stays fixed: a second EM rule to learn it (first name + surname, with or
# without postcode) holds common names shared by strangers, and on the bench's 100,000 records
# EM settled there on m = 0.05 for an exact date (0.42 with postcode): a wrong model.
TRAINING_COLUMNS = [("dob",)]

# The prior, with fixed parameters: each record is expected to have about this many true
# matches among the others (duplicates are the exception), so that the probability that two
# random records match is EXPECTED_MATCHES_PER_RECORD / (records - 1). It must scale with the
# project: a fixed probability would favour matching ever more as a project grows.
EXPECTED_MATCHES_PER_RECORD = 0.3

# Deterministic rules (very few false positives) and the share of true matches they are
# believed to find, for Splink's direct estimate of the prior when training.
DETERMINISTIC_COLUMNS = [("first_name", "surname", "dob"), ("first_name", "dob", "postcode")]
DETERMINISTIC_RECALL = 0.7


# SQL (DuckDB and Spark alike: both have levenshtein built in): first name and surname swapped,
# one of them possibly with a typo or two (swapping while keying often comes with one).
NAMES_SWAPPED_LEVEL = (
    "(first_name_l = surname_r AND levenshtein(surname_l, first_name_r) <= 2) "
    "OR (surname_l = first_name_r AND levenshtein(first_name_l, surname_r) <= 2)")


def _name_comparison(column: str, m: list[float], u: list[float], fix_else_m: bool = False,
                     swapped_counts: bool = True):
    """Null, exact (weighted by how common the name is), first name and surname swapped,
    Jaro-Winkler at least 0.92, one keying error (Jaro-Winkler at least 0.88 or one letter
    dropped, added, changed or two swapped: short names like Mia/Ima score low on Jaro-Winkler),
    else. No lower Jaro-Winkler level: names at 0.7-0.88 are other names (Amelia and Pamela,
    Isaac and Isabella), seen as often among family members as among duplicates.
    `fix_else_m`: training keeps the given m of "else" (see FIRST_NAME_DIFFERENT_M).
    `swapped_counts`: False makes the swapped level weigh nothing (m = u, kept by training), for
    the surname: a swap is one piece of evidence, counted once, in the first name comparison
    (counted in both, a common name swapped outweighed a different date and postcode)."""
    swapped = {} if swapped_counts else {"m_probability": 1.0, "u_probability": 1.0,
                                         "fix_m_probability": True, "fix_u_probability": True}
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name=column,
        comparison_levels=[
            cll.NullLevel(column),
            cll.ExactMatchLevel(column, term_frequency_adjustments=True),
            cll.CustomLevel(NAMES_SWAPPED_LEVEL).configure(
                label_for_charts="first name and surname swapped", **swapped),
            cll.JaroWinklerLevel(column, 0.92),
            cll.Or(cll.JaroWinklerLevel(column, 0.88), cll.DamerauLevenshteinLevel(column, 1)
                   ).configure(label_for_charts="one keying error"),
            cll.ElseLevel().configure(fix_m_probability=fix_else_m),
        ],
    ).configure(m_probabilities=m, u_probabilities=u)


# SQL (DuckDB and Spark alike) of two ISO dates with day and month swapped, year the same.
DAY_MONTH_SWAPPED = ("substr(dob_l, 1, 4) = substr(dob_r, 1, 4) "
                     "AND substr(dob_l, 6, 2) = substr(dob_r, 9, 2) "
                     "AND substr(dob_l, 9, 2) = substr(dob_r, 6, 2)")

# m of a wholly different first name: never the same person, in effect (-30 bits). Twins share
# surname, date of birth and postcode and differ only there; as the other fields' evidence is
# counted as independent, only this can outweigh it, in a project of 7 records (where the
# prior is high but the family's surname common, so weak) as in one of 100,000 (the reverse):
# twins score about 22 bits before the first name, trained postcodes 5 more. It costs the
# duplicates that use a nickname (Bill for William) while agreeing on all else, and that is the
# right side to err on: a missed duplicate stays two records of one person, a wrong merge mixes
# two people's records. Training keeps it: EM cannot tell twins from duplicates (in the
# date-of-birth block, twins look like duplicates with another first name; EM learned m = 0.1).
FIRST_NAME_DIFFERENT_M = 1e-9


def _comparisons() -> list:
    """The five comparisons with the fixed parameters (EM starts from these when training).

    m = P(level | same person), u = P(level | two different people); each list runs over the
    levels in order, without the null level (null pairs are neither evidence for nor against).
    The m values are what duplicates show: most agree exactly on a name, a tenth carry a typo
    (the Jaro-Winkler levels), a few % have first name and surname swapped, ~7 % of later
    records carry another surname (marriage); 85 % agree on the date of birth, the rest have a
    digit wrong or day and month swapped; a fifth moved house between records. The u values are
    the chance agreement of two different people: a first name is shared by ~1 % of random
    pairs and a surname by ~0.3 % (the exact level is then refined per name by its frequency in
    the data: two Smiths weigh less than two Okonkwos), a date of birth by 1 in ~20,000 (60
    years of birthdays), half of pairs agree on sex. A postcode is shared by far fewer than 1
    in 1,000 random pairs, but 1 in 1,000 is used: people with the same surname share postcodes
    far more than by chance (households), and counting both as independent evidence would
    merge family members. So agreement on surname and date of birth with a similar first name
    is a match, and a household (same surname and postcode, other first name) is not.
    """
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    first_name = _name_comparison(
        "first_name",
        m=[0.80, 0.04, 0.11, 0.05 - FIRST_NAME_DIFFERENT_M, FIRST_NAME_DIFFERENT_M],
        u=[0.01, 0.00001, 0.002, 0.003, 0.98499], fix_else_m=True)
    surname = _name_comparison(
        "surname",
        m=[0.80, 1.0, 0.07, 0.02, 0.07],    # 1.0: the swap level's m = u (see _name_comparison)
        u=[0.003, 1.0, 0.001, 0.002, 0.994], swapped_counts=False)
    dob = cl.CustomComparison(
        output_column_name="dob",
        comparison_levels=[
            cll.NullLevel("dob"),
            cll.ExactMatchLevel("dob"),
            cll.CustomLevel(DAY_MONTH_SWAPPED).configure(label_for_charts="day and month swapped"),
            cll.DamerauLevenshteinLevel("dob", 1).configure(label_for_charts="one digit off"),
            cll.ElseLevel(),
        ],
    ).configure(m_probabilities=[0.85, 0.03, 0.10, 0.02],
                u_probabilities=[0.00005, 0.00005, 0.001, 0.9989])
    sex = cl.ExactMatch("sex").configure(m_probabilities=[0.99, 0.01], u_probabilities=[0.5, 0.5])
    postcode = cl.PostcodeComparison("postcode").configure(
        m_probabilities=[0.75, 0.02, 0.02, 0.02, 0.19],
        u_probabilities=[0.001, 0.002, 0.01, 0.03, 0.957])
    return [first_name, surname, dob, sex, postcode]


def _splink_settings(record_count: int):
    """Splink's settings: dedupe over new + existing, pairs only where a record is new."""
    from splink import SettingsCreator, block_on
    from splink.blocking_rule_library import And, CustomRule

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        probability_two_random_records_match=_fixed_prior(record_count),
        comparisons=_comparisons(),
        blocking_rules_to_generate_predictions=[
            And(rule, CustomRule(INVOLVES_NEW))
            for rule in [*(block_on(*columns) for columns in BLOCKING_COLUMNS),
                         CustomRule(NAMES_SWAPPED)]],
        max_iterations=EM_MAX_ITERATIONS,
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )


def _fixed_prior(record_count: int) -> float:
    """The probability that two random records are the same person, without training."""
    return min(0.5, EXPECTED_MATCHES_PER_RECORD / max(1, record_count - 1))


def _fit(linker, record_count: int, settings: MatchSettings, log: Callable[[str], None]) -> None:
    """Train the model if asked and there is enough data; otherwise keep the fixed parameters.
    A training that fails or does not converge also falls back, with the reason logged."""
    if not settings.train:
        log(f"Fixed parameters (training is off); prior {_fixed_prior(record_count):.3g}.")
        return
    if record_count < MIN_RECORDS_TO_TRAIN:
        log(f"Fixed parameters: {record_count} records are too few to train on "
            f"(training needs {MIN_RECORDS_TO_TRAIN:,}).")
        return
    fixed = linker.misc.save_model_to_json()
    try:
        reason = _train(linker, settings, log)
    except Exception as error:  # noqa: BLE001  Splink raises many kinds; any means "untrained"
        reason = f"training failed ({type(error).__name__}: {str(error)[:200]})"
    if reason:
        _restore(linker, fixed)
        log(f"Fixed parameters: {reason}.")


def _train(linker, settings: MatchSettings, log: Callable[[str], None]) -> str | None:
    """u by random sampling, the prior from deterministic rules, m by EM; the reason it could
    not be trained, or None."""
    from splink import block_on

    training = linker.training
    training.estimate_u_using_random_sampling(max_pairs=settings.max_pairs_for_u, seed=1)
    training.estimate_probability_two_random_records_match(
        [block_on(*columns) for columns in DETERMINISTIC_COLUMNS], recall=DETERMINISTIC_RECALL)
    max_iterations = linker._settings_obj.training_settings.max_iterations
    for columns in TRAINING_COLUMNS:
        session = training.estimate_parameters_using_expectation_maximisation(
            block_on(*columns), estimate_without_term_frequencies=True,
            fix_u_probabilities=True, max_pairs=MAX_PAIRS_FOR_EM)
        iterations = len(session._core_model_settings_history) - 1
        if iterations >= max_iterations:
            return f"EM on {' + '.join(columns)} did not converge in {iterations} iterations"
    model = linker.misc.save_model_to_json()
    problem = _implausible(model)
    if problem:
        return problem
    _restore(linker, _monotone(model))
    log(f"Trained: u from up to {settings.max_pairs_for_u:,} random pairs, m by EM on "
        f"{' + '.join(TRAINING_COLUMNS[0])}; prior {model['probability_two_random_records_match']:.3g}.")
    return None


def _levels(comparison: dict) -> list[dict]:
    """The levels of a saved comparison that carry m and u (all but the null level)."""
    return [level for level in comparison["comparison_levels"] if not level.get("is_null_level")]


def _implausible(model: dict) -> str | None:
    """Why a trained model is not to be used, or None: EM can settle on another split than
    same/different person, which shows as the exact level less likely among matches than the
    last ("else") level."""
    for comparison in model["comparisons"]:
        levels = _levels(comparison)
        if levels[0]["m_probability"] <= levels[-1]["m_probability"]:
            return (f"EM gave an implausible model ({comparison['output_column_name']} agrees in "
                    f"{levels[0]['m_probability']:.0%} of matches)")
    return None


def _monotone(model: dict) -> dict:
    """The model with no agreement level weighing less than total disagreement ("else").
    EM gives m = 0 to a level that it saw only among non-matches on its data (a postcode of the
    same sector: on the bench's data, movers move far), which makes that partial agreement
    weigh -100 bits: more than any disagreement. Such levels get the weight of "else"."""
    for comparison in model["comparisons"]:
        levels = _levels(comparison)
        floor = levels[-1]["m_probability"] / levels[-1]["u_probability"]
        for level in levels[:-1]:
            level["m_probability"] = max(level["m_probability"], floor * level["u_probability"])
    return model


def _restore(linker, model: dict) -> None:
    """Give the linker the parameters of `model` (a saved model: Splink's JSON form)."""
    from splink import SettingsCreator

    creator = SettingsCreator.from_path_or_dict(model)
    linker._settings_obj = creator.get_settings(linker._db_api.sql_dialect.sql_dialect_str)
