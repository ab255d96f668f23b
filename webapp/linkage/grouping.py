"""Groups of records that are one person: the connected components of the matched pairs.

The group id is the smallest record id in the group. Record ids only grow, so a group keeps
its id when later records join it; and since the components depend only on the pairs, grouping
again after a rollback (its records and their pairs gone) gives back exactly the groups there
were before the envelope.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def group_ids(record_ids: pa.Array | list[int], pairs: pa.Table) -> dict[int, int]:
    """record id -> group id: the connected components of the pairs (use Splink's clustering,
    `cluster_pairwise_predictions_at_threshold`, on DuckDB), each group's id the SMALLEST record id
    in it, so a group keeps its id when later records join it, and regrouping after a rollback gives
    back exactly the groups there were. Records in no pair are groups of one (their own id).

    `pairs` has record_id_l and record_id_r (the pairs are all matches: the threshold was applied
    when they were found); a pair naming a record not in `record_ids` is left out.
    """
    nodes = pa.table({"record_id": pa.array(record_ids, pa.int64())})
    edges = _edges_within(nodes.column("record_id"), pairs)
    if edges.num_rows == 0:
        return {record_id: record_id for record_id in nodes.column("record_id").to_pylist()}
    components = _components(nodes, edges)
    return dict(zip(components.column("record_id").to_pylist(),
                    components.column("group_id").to_pylist()))


def _edges_within(ids: pa.ChunkedArray, pairs: pa.Table) -> pa.Table:
    """The pairs whose two records are both among `ids`, as int64."""
    left = pairs.column("record_id_l").cast(pa.int64())
    right = pairs.column("record_id_r").cast(pa.int64())
    inside = pc.and_(pc.is_in(left, value_set=ids), pc.is_in(right, value_set=ids))
    return pa.table({"record_id_l": left, "record_id_r": right}).filter(inside)


def _components(nodes: pa.Table, edges: pa.Table) -> pa.Table:
    """record_id, group_id (the component's smallest record id), by Splink on DuckDB."""
    from splink.backends.duckdb import DuckDBAPI
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    db_api = DuckDBAPI()
    clusters = cluster_pairwise_predictions_at_threshold(
        nodes, edges, db_api=db_api, node_id_column_name="record_id",
        threshold_match_probability=None)  # None: every pair given is a match
    # Splink names each component after its smallest id already; the rule is ours, so it is
    # stated here rather than left to how Splink's algorithm happens to pick a representative.
    relation = db_api.duckdb_con.sql(
        f"SELECT record_id, min(record_id) OVER (PARTITION BY cluster_id) AS group_id "
        f"FROM {clusters.physical_name}")
    return relation.to_arrow_table()
