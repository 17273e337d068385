"""Identity resolution: which aliases (loyalty cards, app installs, e-mail hashes) belong to which customer.

The ``identities`` table holds links ``alias_id -> customer_id``. Links may chain (A -> B and B -> C make A,
B and C one customer), so the ids are grouped with a union-find over the link graph (the connected components
of the undirected graph, computed array-based by :func:`scipy.sparse.csgraph.connected_components`), and each
group gets one canonical id.

Rules (the documented contract; tests pin each one):

* **Canonical id** of a group: an id that appears as a customer (in the ``customers`` table or in the links'
  ``customer_id`` column) and never as an alias; the lexicographically smallest when several. A group where
  every id is an alias (a cycle such as A -> B, B -> A) falls back to the smallest id that is in the
  ``customers`` table, else the smallest id of the group, and is logged.
* **Conflicts**: an alias whose links point to two customers that are otherwise unrelated. The alias keeps its
  *first* link in file order; each later link to an unrelated customer is quarantined with reason
  ``identity_conflict``, so one bad row never merges two real customers. A later link to a customer already in
  the same group (through the alias's other links or any other alias) is consistent and kept.
* A link with an empty ``alias_id`` or ``customer_id`` is quarantined with reason ``missing_id``; a self-link
  (alias == customer) only says that the id is a customer and is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from recsvc_training.input.columns import ALIAS_ID, CUSTOMER_ID, IDENTITY_COLUMNS, REASON_MISSING_ID

logger = logging.getLogger(__name__)

#: Quarantine reason of a link that would merge two otherwise unrelated customers.
#: (Not yet in :mod:`recsvc_training.input.columns`, which owns the other reasons.)
REASON_IDENTITY_CONFLICT = "identity_conflict"
#: Quarantine-file column holding the reason of each quarantined row.
REASON_COLUMN = "reason"
#: Quarantine-file column holding the 1-based data row number of each quarantined row in its input.
SOURCE_ROW_COLUMN = "source_row"


@dataclass(frozen=True)
class IdentityResolution:
    """The outcome of :func:`resolve_identities`.

    Attributes
    ----------
    alias_to_customer
        Every alias id -> its canonical customer id. Canonical ids themselves are not keys, so an id that is
        not a key is its own customer.
    conflicts
        The quarantined ``identity_conflict`` link rows: the input columns plus ``reason`` and ``source_row``
        (1-based position in ``links``, which is the data row number when ``links`` is a file in file order).
    invalid_links
        The quarantined ``missing_id`` link rows (empty alias or customer id), same columns as ``conflicts``.
    conflicting_aliases
        Sorted unique alias ids that had a conflicting link.
    links_read, links_kept
        Link rows given, and rows not quarantined (``links_read == links_kept + len(conflicts) +
        len(invalid_links)``).
    n_customers
        Canonical customers: groups in the links plus ``customer_ids`` not linked to anything.
    n_cycle_groups
        Groups in which every id was an alias (canonical id chosen by the fallback rule).
    """

    alias_to_customer: dict[str, str]
    conflicts: pd.DataFrame
    invalid_links: pd.DataFrame
    conflicting_aliases: tuple[str, ...]
    links_read: int
    links_kept: int
    n_customers: int
    n_cycle_groups: int = 0

    @property
    def n_aliases(self) -> int:
        return len(self.alias_to_customer)

    @property
    def n_conflicts(self) -> int:
        """Alias ids linked to more than one unrelated customer (what the run summary reports)."""
        return len(self.conflicting_aliases)

    def quarantined(self) -> pd.DataFrame:
        """Every quarantined link row (conflicts and invalid links), in input order."""
        frames = [f for f in (self.invalid_links, self.conflicts) if len(f)]
        if not frames:
            return self.conflicts.copy()
        return pd.concat(frames, ignore_index=True).sort_values(SOURCE_ROW_COLUMN, kind="stable",
                                                                 ignore_index=True)


def resolve_identities(links: pd.DataFrame, customer_ids: Iterable[str]) -> IdentityResolution:
    """Group chained alias links into customers and pick one canonical id per group.

    Parameters
    ----------
    links
        One row per link with string columns ``alias_id`` and ``customer_id`` (other columns are carried into
        the quarantine rows only), in file order: file order decides which link of a conflicting alias wins.
        Ids are compared exactly as given (callers trim whitespace first).
    customer_ids
        Ids of the ``customers`` table (may be empty). They count as customers for the canonical-id rule;
        those that are never linked are canonical customers of their own.

    Returns
    -------
    IdentityResolution
        The alias map, the quarantined rows and the counts. See the module docstring for the rules.

    Raises
    ------
    ValueError
        If ``links`` lacks ``alias_id`` or ``customer_id``.
    """
    missing = [c for c in IDENTITY_COLUMNS if c not in links.columns]
    if missing:
        raise ValueError(f"identity links need columns {list(IDENTITY_COLUMNS)}; missing {missing}, "
                         f"got {list(links.columns)}")
    n = len(links)
    alias = _as_text(links[ALIAS_ID])
    customer = _as_text(links[CUSTOMER_ID])
    known = _as_text(pd.Series(list(customer_ids), dtype=object))
    known = known[known != ""]

    # One factorisation gives every id an integer node; the rest is array work on those codes.
    codes, uniques = pd.factorize(pd.concat([alias, customer, known], ignore_index=True))
    ids = np.asarray(uniques, dtype=object)
    n_ids = len(ids)
    a, c, k = codes[:n], codes[n:2 * n], codes[2 * n:]

    invalid = (alias == "").to_numpy() | (customer == "").to_numpy()
    self_link = ~invalid & (a == c)
    edge_rows = np.flatnonzero(~invalid & ~self_link)  # rows that link two different ids

    # The first link of each alias (file order) is kept unconditionally; a later link to another customer is
    # kept only when the first links already put that customer in the alias's group.
    first_of_alias = ~pd.Series(a[edge_rows]).duplicated(keep="first").to_numpy()
    primary_rows = edge_rows[first_of_alias]
    later_rows = edge_rows[~first_of_alias]
    labels = _components(a[primary_rows], c[primary_rows], n_ids)
    conflicting = labels[a[later_rows]] != labels[c[later_rows]]
    conflict_rows = later_rows[conflicting]
    # Consistent later links join ids already in one group, so the grouping above stays exact.

    kept_edges = np.concatenate([primary_rows, later_rows[~conflicting]])
    is_alias = np.zeros(n_ids, dtype=bool)
    is_alias[a[kept_edges]] = True
    in_table = np.zeros(n_ids, dtype=bool)
    in_table[k] = True
    is_customer = in_table.copy()
    is_customer[c[kept_edges]] = True
    is_customer[c[self_link]] = True
    # Ids seen only in quarantined links (or the empty id) are no node of any group.
    used = is_alias | is_customer

    canonical, n_cycles = _pick_canonical(labels, used, is_customer & ~is_alias, in_table, ids)
    if n_cycles:
        logger.warning("%d identity group(s) have no id that is never an alias (cyclic links); "
                       "their canonical id is the smallest customer-table id, else the smallest id", n_cycles)
    node_canonical = canonical[labels]
    member = used & (node_canonical != np.arange(n_ids))
    alias_to_customer = dict(zip(ids[member].tolist(), ids[node_canonical[member]].tolist(), strict=True))

    conflicts = _quarantine_rows(links, conflict_rows, REASON_IDENTITY_CONFLICT)
    invalid_links = _quarantine_rows(links, np.flatnonzero(invalid), REASON_MISSING_ID)
    conflicting_aliases = tuple(sorted(set(ids[a[conflict_rows]].tolist())))
    if conflicting_aliases:
        logger.warning("%d alias id(s) are linked to more than one unrelated customer; kept the first link "
                       "of each, quarantined %d link(s) (e.g. %s)",
                       len(conflicting_aliases), len(conflict_rows), ", ".join(conflicting_aliases[:5]))
    resolution = IdentityResolution(
        alias_to_customer=alias_to_customer,
        conflicts=conflicts,
        invalid_links=invalid_links,
        conflicting_aliases=conflicting_aliases,
        links_read=n,
        links_kept=n - len(conflict_rows) - int(invalid.sum()),
        n_customers=int(np.count_nonzero(np.bincount(labels[used], minlength=1))),
        n_cycle_groups=n_cycles,
    )
    logger.info("identities: %d links, %d aliases -> %d customers, %d conflicting alias(es)",
                n, resolution.n_aliases, resolution.n_customers, resolution.n_conflicts)
    return resolution


def resolve_column(values: pd.Series, mapping: Mapping[str, str]) -> pd.Series:
    """Replace every alias in ``values`` by its canonical customer id (vectorised).

    Ids that are not aliases (canonical customers, unknown ids, empty strings) are returned unchanged, so the
    result has the same length, index, name and dtype as ``values``.
    """
    if not mapping or len(values) == 0:
        return values.copy()
    keys = pd.Series(list(mapping.keys()), dtype=str)
    # A joint factorisation is a hash join: the code of each value says which key (if any) it equals.
    codes, _ = pd.factorize(pd.concat([keys, values.reset_index(drop=True).astype(str)], ignore_index=True))
    key_codes, value_codes = codes[:len(keys)], codes[len(keys):]
    slot = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    slot[key_codes] = np.arange(len(keys))
    position = np.where(value_codes >= 0, slot[value_codes], -1)
    hit = np.flatnonzero(position >= 0)
    resolved = values.copy()
    if len(hit):
        targets = np.asarray(list(mapping.values()), dtype=object)
        resolved.iloc[hit] = targets[position[hit]]
    return resolved


def _as_text(column: pd.Series) -> pd.Series:
    """Column as str values with a RangeIndex, missing values as ""."""
    return column.astype(object).where(column.notna(), "").astype(str).reset_index(drop=True)


def _components(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Connected-component label per node of the undirected graph with edges a[i] -- b[i] (a union-find
    over all links at once)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)


def _pick_canonical(labels: np.ndarray, used: np.ndarray, candidate: np.ndarray, in_table: np.ndarray,
                    ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Node of the canonical id of each group label (-1 for groups without a used node), and how many groups
    needed the cycle fallback.

    Almost every group has exactly one candidate (a chain of aliases ends in one customer), so ids are only
    compared as strings for the rare groups with several or none, instead of sorting every id.
    """
    n_groups = int(labels.max()) + 1 if len(labels) else 0
    canonical = np.full(n_groups, -1, dtype=np.int64)
    nodes = np.flatnonzero(candidate)
    per_group = np.bincount(labels[nodes], minlength=n_groups)
    single = per_group[labels[nodes]] == 1
    canonical[labels[nodes[single]]] = nodes[single]
    _assign_smallest(canonical, nodes[~single], labels, ids)

    has_nodes = np.zeros(n_groups, dtype=bool)
    has_nodes[labels[used]] = True
    orphan = has_nodes & (canonical < 0)
    n_orphans = int(orphan.sum())
    if n_orphans:
        in_orphan = used & orphan[labels]
        _assign_smallest(canonical, np.flatnonzero(in_orphan & in_table), labels, ids)
        _assign_smallest(canonical, np.flatnonzero(in_orphan & (canonical[labels] < 0)), labels, ids)
    return canonical, n_orphans


def _assign_smallest(canonical: np.ndarray, nodes: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
    """For each group among ``nodes``, set ``canonical`` to the node with the lexicographically smallest id."""
    if not len(nodes):
        return
    frame = pd.DataFrame({"group": labels[nodes], "id": ids[nodes], "node": nodes})
    smallest = frame.sort_values("id", kind="stable").drop_duplicates("group")
    canonical[smallest["group"].to_numpy()] = smallest["node"].to_numpy()


def _quarantine_rows(links: pd.DataFrame, rows: np.ndarray, reason: str) -> pd.DataFrame:
    """Rows of ``links`` at positions ``rows`` plus ``reason`` and 1-based ``source_row``."""
    out = links.iloc[np.sort(rows)].reset_index(drop=True)
    out[REASON_COLUMN] = pd.Series([reason] * len(out), dtype=object)
    out[SOURCE_ROW_COLUMN] = np.sort(rows).astype(np.int64) + 1
    return out
