"""The transport-free ranking core: plain Python and numpy, unit-testable without gRPC.

:class:`LoadedModel` indexes one artifact set; candidate sources (:mod:`.repurchase`, :mod:`.copurchase`,
:mod:`.als`, :mod:`.popularity`, :mod:`.coldstart`) propose items behind one interface (:mod:`.sources`);
:class:`RecommendationEngine` validates queries, ranks the candidates — with the trained ranker
(:mod:`.learned`) when the model has one, else by weighted reciprocal rank fusion (:mod:`.blend`) — filters
and fills (:mod:`.filters`), and explains (:mod:`.reasons`); basket completions and bundles are
:mod:`.bundles`. Queries and results are :mod:`.results`. Errors are :mod:`recsvc.errors` subclasses that
carry their status.
"""

from recsvc.ranking.blend import BlendWeights
from recsvc.ranking.filters import StockLookup
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.reasons import Reason, ReasonKind
from recsvc.ranking.recommender import RecommendationEngine
from recsvc.ranking.results import (
    Bundle,
    BundleQuery,
    BundleResult,
    RecommendQuery,
    RecommendResult,
    SimilarResult,
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
    "SimilarResult",
    "StockLookup",
    "Suggestion",
]
