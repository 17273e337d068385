"""The ranker step of a training run: learn the published ranker from the most recent label windows.

The ranker learns on label windows the models under it never saw, so every window needs the models built from
the events before it. Those builds are the expensive part, and the evaluation needs some of the same days
(its ranker's windows end where the test window starts), so both draw them from one :class:`ModelsBefore`.

The step receives the model builder as a value (``build``, in practice the pipeline's ``build_artifacts``)
instead of importing it: the pipeline calls this step, and a step that imported the pipeline back would make
an import cycle.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from recsvc.artifacts import ArtifactSet
from recsvc.artifacts.parts.ranker import RANKER_EXTRA
from recsvc.config import TrainingSettings
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.trees import TreeEnsemble
from recsvc_training.assemble import ModelRole
from recsvc_training.input import columns as C
from recsvc_training.input.dataset import TrainingData
from recsvc_training.ranker.learned_blend import (
    MIN_WINDOW_HISTORY_DAYS,
    ExampleCache,
    fit_learned_ranker,
    label_window_starts,
)

logger = logging.getLogger(__name__)

class ModelBuilder(Protocol):
    """Builds every model array a role needs from cleaned data (``recsvc_training.assemble.build_artifacts``)."""

    def __call__(self, data: TrainingData, settings: TrainingSettings, *, role: ModelRole = ...) -> ArtifactSet:
        ...


class ModelsBefore:
    """Models built from the events before a day, each built once and shared by every step that needs it.

    ``settings`` should have ``progress`` off (these builds run many times inside one run). A label window's
    models are built for :attr:`ModelRole.LABEL_WINDOW` (only what the ranker's pool and features read); the
    set under evaluation (:meth:`artifacts`) for :attr:`ModelRole.EVALUATION`. :attr:`built` records each
    build (day, role, seconds) for the manifest.
    """

    def __init__(self, data: TrainingData, settings: TrainingSettings, build: ModelBuilder) -> None:
        self.data = data
        self.settings = settings
        self._build = build
        self._models: dict[int, LoadedModel] = {}
        self._similar: dict[int, LoadedModel] = {}
        self.built: list[dict[str, Any]] = []
        #: Each label window's ranker examples, shared by the evaluation's and the published ranker.
        self.examples: ExampleCache = {}
        self.first_day = int(data.events[C.DAY].min())
        self.end_day = int(data.events[C.DAY].max())

    def _timed_build(self, day: int, role: ModelRole) -> ArtifactSet:
        started = time.perf_counter()
        artifacts = self._build(self.data.before(day), self.settings, role=role)
        self.built.append({"day": int(day), "role": role.value, "seconds": round(time.perf_counter() - started, 2)})
        return artifacts

    def artifacts(self, day: int) -> ArtifactSet:
        """A fresh (uncached) set built from the events before ``day`` for the evaluation to score as served:
        for a caller that adds arrays to it (and may :meth:`remember` it)."""
        return self._timed_build(day, ModelRole.EVALUATION)

    def __call__(self, day: int) -> LoadedModel:
        if day not in self._models:
            self._models[day] = LoadedModel(self._timed_build(day, ModelRole.LABEL_WINDOW))
        return self._models[day]

    def for_similar_items(self, day: int) -> LoadedModel:
        """The models before ``day`` for the SimilarItems choice: the set already built for that day when there
        is one (every role holds what the choice reads), else one built for :attr:`ModelRole.SIMILAR_ITEMS`,
        kept apart so that a later label window of that day still gets its TIFU-KNN lists."""
        if day in self._models:
            return self._models[day]
        if day not in self._similar:
            self._similar[day] = LoadedModel(self._timed_build(day, ModelRole.SIMILAR_ITEMS))
        return self._similar[day]

    def remember(self, day: int, model: LoadedModel) -> None:
        """Share a model the caller built from the events before ``day`` (extra ranker arrays do not matter:
        the ranker's features ignore them; an evaluation set holds everything a label-window set does)."""
        self._models[day] = model

    def label_windows(self, end: int) -> list[tuple[LoadedModel, int]]:
        """Label windows ending at ``end`` (exclusive) with enough history before them, newest first, each with
        the models built before it."""
        return [(self(start), start) for start in label_window_starts(end, self.first_day, self.settings)]


def attach_ranker(artifacts: ArtifactSet, ranker: TreeEnsemble | None, stats: dict[str, Any]) -> None:
    """Add the ranker's arrays (when there is one) and its statistics (``extra[RANKER_EXTRA]``) to a set."""
    if ranker is not None:
        artifacts.arrays.update(ranker.to_arrays())
    artifacts.extra[RANKER_EXTRA] = dict(stats)


def fit_published_ranker(artifacts: ArtifactSet, models: ModelsBefore, settings: TrainingSettings) -> None:
    """The ranker step: learn from the most recent label windows (ending with the log), attach to ``artifacts``.

    Nothing is attached when no window has enough history before it: the set then ranks by rank fusion.
    """
    windows = models.label_windows(models.end_day + 1)
    if windows:
        attach_ranker(artifacts, *fit_learned_ranker(windows, models.data.events, settings,
                                                        cache=models.examples))
    else:
        logger.warning("no label window has %d days of log before it: publishing without a learned ranker",
                       MIN_WINDOW_HISTORY_DAYS)
    # every set this run built besides the published one (the evaluation's and the label windows')
    artifacts.extra["models_before"] = list(models.built)
