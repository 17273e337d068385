"""The two duck-typed interfaces the evaluation runner calls, so any model can be plugged in.

A model does not inherit anything: an object with the right attribute and method is enough, which is how the
real serving engine joins a run as one more recommender next to the baselines. Everything speaks integer rows
of the split's :class:`~recsvc_training.evaluation.split.EvalIndex`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Recommender(Protocol):
    """Ranks the whole catalog for a batch of customers.

    ``recommend`` gets customer rows (int64, ``EvalIndex`` rows; rows ``>= index.n_train_customers`` have no
    history), each customer's channel (the main channel of their test-window purchases: the channel the
    request would come from) and ``k``. It returns an int array ``[len(customer_rows), k]`` of item rows, best
    first, padded with -1 when it has fewer than ``k`` items. Keep items the customer already bought: in
    grocery a repeat purchase is a hit, and the truth includes them.

    An optional boolean attribute ``serves_new_customers`` (default False) says the model has something
    sensible for customers without history; only those models are scored on the new-customer slice.
    """

    name: str

    def recommend(self, customer_rows: np.ndarray, channels: Sequence[str], k: int) -> np.ndarray: ...


@runtime_checkable
class Completer(Protocol):
    """Completes a shopping basket: "what else goes with these items?".

    ``complete`` gets one int array of item rows per basket (the items already in it) and ``k``; it returns an
    int array ``[len(basket_item_rows), k]`` of item rows, best first, padded with -1. It should not return
    items already in the basket (they waste a slot; the runner does not remove them).
    """

    name: str

    def complete(self, basket_item_rows: Sequence[np.ndarray], k: int) -> np.ndarray: ...
