"""Identity resolution rules (recsvc_training.input.identity), each on a tiny link table with a known answer."""

from __future__ import annotations

import pandas as pd
import pytest

from recsvc_training.input.columns import ALIAS_ID, CUSTOMER_ID, REASON_MISSING_ID
from recsvc_training.input.identity import (
    REASON_IDENTITY_CONFLICT,
    IdentityResolution,
    resolve_column,
    resolve_identities,
)


def links(*pairs: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame({ALIAS_ID: [a for a, _ in pairs], CUSTOMER_ID: [c for _, c in pairs]}, dtype=str)


def resolve(*pairs: tuple[str, str], customers: tuple[str, ...] = ()) -> IdentityResolution:
    return resolve_identities(links(*pairs), customers)


def test_chained_aliases_resolve_to_the_end_of_the_chain() -> None:
    result = resolve(("A", "B"), ("B", "C"))
    assert result.alias_to_customer == {"A": "C", "B": "C"}
    assert result.n_customers == 1
    assert result.n_conflicts == 0
    assert result.links_kept == 2


def test_chain_written_in_reverse_order_resolves_the_same() -> None:
    assert resolve(("B", "C"), ("A", "B")).alias_to_customer == {"A": "C", "B": "C"}


def test_canonical_ids_are_not_keys_and_unlinked_customers_count() -> None:
    result = resolve(("card1", "007"), customers=("007", "008"))
    assert result.alias_to_customer == {"card1": "007"}
    assert result.n_customers == 2  # 007 with its card, 008 alone


def test_customer_table_id_linked_as_alias_is_merged_into_its_target() -> None:
    # Both ids are customers, but the link says 100 is an alias of 200: the data's statement, not a conflict.
    result = resolve(("100", "200"), customers=("100", "200"))
    assert result.alias_to_customer == {"100": "200"}
    assert result.n_conflicts == 0


def test_conflicting_link_is_quarantined_and_does_not_merge_two_customers() -> None:
    result = resolve(("X", "C1"), ("Y", "C2"), ("X", "C2"), customers=("C1", "C2"))
    assert result.alias_to_customer == {"X": "C1", "Y": "C2"}  # first link in file order wins
    assert result.n_conflicts == 1
    assert result.conflicting_aliases == ("X",)
    assert result.conflicts[[ALIAS_ID, CUSTOMER_ID, "reason", "source_row"]].to_dict("records") == [
        {ALIAS_ID: "X", CUSTOMER_ID: "C2", "reason": REASON_IDENTITY_CONFLICT, "source_row": 3}]
    assert result.n_customers == 2
    assert result.links_read == 3 and result.links_kept == 2


def test_conflict_keeps_the_first_link_in_file_order() -> None:
    assert resolve(("X", "C2"), ("X", "C1")).alias_to_customer == {"X": "C2"}


def test_second_link_to_a_related_customer_is_consistent_not_a_conflict() -> None:
    # X -> C1 and X -> C2, but C2 is itself an alias of C1 (row 3, after the "conflict"): all one customer.
    result = resolve(("X", "C1"), ("X", "C2"), ("C2", "C1"))
    assert result.n_conflicts == 0
    assert result.alias_to_customer == {"X": "C1", "C2": "C1"}
    assert result.links_kept == 3


def test_repeated_identical_link_is_not_a_conflict() -> None:
    result = resolve(("X", "C1"), ("X", "C1"))
    assert result.n_conflicts == 0
    assert result.alias_to_customer == {"X": "C1"}


def test_one_alias_with_three_customers_counts_once_with_two_rows() -> None:
    result = resolve(("X", "C1"), ("X", "C2"), ("X", "C3"))
    assert result.n_conflicts == 1
    assert result.conflicts["source_row"].tolist() == [2, 3]
    assert result.alias_to_customer == {"X": "C1"}


def test_cycle_falls_back_to_smallest_id_preferring_the_customer_table() -> None:
    assert resolve(("B", "A"), ("A", "B")).alias_to_customer == {"B": "A"}
    assert resolve(("B", "A"), ("A", "B"), customers=("B",)).alias_to_customer == {"A": "B"}
    assert resolve(("B", "A"), ("A", "B")).n_cycle_groups == 1


def test_canonical_id_ordering_is_lexicographic_on_strings() -> None:
    # "10" < "9" as strings; ids are strings, never numbers.
    assert resolve(("9", "10"), ("10", "9")).alias_to_customer == {"9": "10"}


def test_empty_ids_are_quarantined_as_missing_id_and_self_links_are_harmless() -> None:
    result = resolve(("", "C1"), ("A", ""), ("C1", "C1"), ("A", "C1"))
    assert result.alias_to_customer == {"A": "C1"}
    assert result.invalid_links["source_row"].tolist() == [1, 2]
    assert set(result.invalid_links["reason"]) == {REASON_MISSING_ID}
    assert result.links_kept == 2
    assert result.quarantined()["source_row"].tolist() == [1, 2]


def test_leading_zeros_are_distinct_ids() -> None:
    assert resolve(("0042", "042")).alias_to_customer == {"0042": "042"}


def test_no_links() -> None:
    result = resolve(customers=("a", "b"))
    assert result.alias_to_customer == {}
    assert result.n_customers == 2
    assert len(result.conflicts) == 0 and len(result.quarantined()) == 0


def test_missing_column_is_an_error() -> None:
    with pytest.raises(ValueError, match="alias_id"):
        resolve_identities(pd.DataFrame({CUSTOMER_ID: ["a"]}), [])


def test_resolve_column_maps_aliases_and_leaves_everything_else() -> None:
    values = pd.Series(["A", "C", "zz", "", "B"], index=[5, 6, 7, 8, 9], name=CUSTOMER_ID, dtype=str)
    resolved = resolve_column(values, {"A": "C", "B": "C"})
    assert resolved.tolist() == ["C", "C", "zz", "", "C"]
    assert resolved.index.tolist() == [5, 6, 7, 8, 9]
    assert resolved.name == CUSTOMER_ID
    assert resolved.dtype == values.dtype
    assert values.tolist() == ["A", "C", "zz", "", "B"]  # input untouched
    assert resolve_column(values, {}).tolist() == values.tolist()
