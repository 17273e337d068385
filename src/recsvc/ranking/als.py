"""ALS (implicit-feedback alternating least squares): customer factor · item factors over the whole catalog.

The reason shown is "customers like you" (REASON_KIND_CUSTOMERS_LIKE_YOU); the source, its blend weight and
its policy key are ``als``, the name the trainer (``recsvc_training.models.als``) and the artifact arrays
(``als_*``) use.

Nothing is excluded here — items the customer already bought stay candidates, since in retail they are often
exactly what is wanted; the repurchase source explains those better and usually wins their reason in the
blend. The reason names the customer's own history items most similar to each candidate, so a clerk can say
"because you bought X".
"""

from __future__ import annotations

import logging

import numpy as np

from recsvc.ranking.foldin import FoldIn
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.reasons import ReasonKind
from recsvc.ranking.scoring import nearest_items
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext

logger = logging.getLogger(__name__)


def most_similar_sources(model: LoadedModel, candidates: np.ndarray, sources: np.ndarray,
                         n: int = 2) -> np.ndarray:
    """For each candidate row, the up-to-``n`` ``sources`` rows with the highest cosine (int64 ``[c, n]``).

    A candidate is never its own source, and only positively similar sources count; missing ones are ``-1``.
    Cost is ``len(candidates) * len(sources)`` dot products, so callers cap ``sources``.
    """
    out = np.full((candidates.size, n), -1, dtype=np.int64)
    if candidates.size == 0 or sources.size == 0:
        return out
    sims = model.normed_vectors(candidates) @ model.normed_vectors(sources).T
    sims[candidates[:, None] == sources[None, :]] = -np.inf
    width = min(n, sources.size)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :width]
    chosen_sims = sims[np.arange(candidates.size)[:, None], order]
    out[:, :width] = np.where(chosen_sims > 0, sources[order], -1)
    return out


class AlsSource(CandidateSource):
    """Top-``k`` items by ALS score for a known customer; reason CUSTOMERS_LIKE_YOU.

    When the model carries an ANN index (catalogs of ``ann_min_items`` and more) the top-``k`` comes from it,
    with exact scores; its recall@10 against exact scoring is in the manifest (``extra.ann``).

    ``max_explain_history`` caps how many of the customer's (most recent) history items are compared with the
    candidates to name the reason's source items.
    """

    name = "als"
    needs_customer = True
    uses_channel = False
    max_explain_history: int = 200

    def candidates(self, ctx: RankingContext, k: int) -> Candidates:
        m = self.model
        if ctx.customer_row < 0 or m.n_factors == 0:
            return Candidates.empty(self.name)
        user = np.asarray(m.user_factors[ctx.customer_row], dtype=np.float32)
        if ctx.context_items.size:  # what the customer looks at now moves their vector at once (no retraining)
            user = FoldIn.for_model(m).user_vector(ctx)
        if not np.any(user):
            return Candidates.empty(self.name)
        best, best_scores = nearest_items(m, user, k)
        return Candidates.build(self.name, best, best_scores, ReasonKind.CUSTOMERS_LIKE_YOU,
                                resolve_reason_items=self.reason_items)

    def reason_items(self, items: np.ndarray, ctx: RankingContext) -> np.ndarray:
        """The customer's history items most similar to each of ``items`` (``[m, 2]``): computed only for the
        candidates that are shown, since most of the ``k`` never are."""
        hist = ctx.history
        recent = np.argsort(-hist.last_day, kind="stable")[: self.max_explain_history]
        return most_similar_sources(self.model, items, hist.items[recent].astype(np.int64))
