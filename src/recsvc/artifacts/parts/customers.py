"""Customers and their aliases (loyalty card, app id ...), each alias resolved to one customer.

=================  ==========================  =============================================
array              dtype, shape                meaning
=================  ==========================  =============================================
customer_ids       U, [n_customers]            sorted resolved customer ids
alias_ids          U, [n_aliases]              sorted alias ids
alias_customer     int32, [n_aliases]          row in ``customer_ids`` of each alias
=================  ==========================  =============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from recsvc.artifacts.part import Part, SetContext, array, rows_within, sorted_unique

CUSTOMER_IDS = "customer_ids"
ALIAS_IDS = "alias_ids"
ALIAS_CUSTOMER = "alias_customer"


@dataclass(frozen=True, eq=False)
class Customers(Part):
    NAME = "customers"
    REQUIRED = True
    ARRAYS = (CUSTOMER_IDS, ALIAS_IDS, ALIAS_CUSTOMER)

    customer_ids: np.ndarray
    alias_ids: np.ndarray
    alias_customer: np.ndarray

    @property
    def n_customers(self) -> int:
        return int(self.customer_ids.shape[0])

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {CUSTOMER_IDS: self.customer_ids, ALIAS_IDS: self.alias_ids, ALIAS_CUSTOMER: self.alias_customer}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> Customers:
        ids = array(arrays, CUSTOMER_IDS, "U", (None,))
        aliases = array(arrays, ALIAS_IDS, "U", (None,))
        owner = array(arrays, ALIAS_CUSTOMER, "iu", (aliases.shape[0],))
        sorted_unique(CUSTOMER_IDS, ids)
        sorted_unique(ALIAS_IDS, aliases)
        rows_within(ALIAS_CUSTOMER, owner, ids.shape[0])
        return cls(ids, aliases, owner)
