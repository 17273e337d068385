"""The transport-free ranking core: plain Python and numpy, unit-testable without gRPC.

:class:`LoadedModel` indexes one artifact set; candidate sources (:mod:`.repurchase`, :mod:`.copurchase`,
:mod:`.collaborative`, :mod:`.popularity`) propose items behind one interface (:mod:`.sources`);
:class:`RecommendationEngine` validates queries, blends the sources by rank (:mod:`.blend`), filters, fills
and explains (:mod:`.reasons`). Errors are :mod:`recsvc.errors` subclasses that carry their status.
"""

from recsvc.ranking.blend import BlendWeights
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.reasons import Reason, ReasonKind
from recsvc.ranking.recommender import (
    Bundle,
    BundleQuery,
    BundleResult,
    RecommendationEngine,
    RecommendQuery,
    RecommendResult,
    Suggestion,
)
from recsvc.ranking.sources import Candidates, CandidateSource, RankingContext

__all__ = [
    "BlendWeights",
    "Bundle",
    "BundleQuery",
    "BundleResult",
    "CandidateSource",
    "Candidates",
    "LoadedModel",
    "RankingContext",
    "Reason",
    "ReasonKind",
    "RecommendQuery",
    "RecommendResult",
    "RecommendationEngine",
    "Suggestion",
]
