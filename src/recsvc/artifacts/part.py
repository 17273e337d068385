"""What an artifact part is, and the checks parts share.

A *part* is one frozen dataclass (in its own module under :mod:`recsvc.artifacts.parts`) that owns a few
arrays of an artifact set and, sometimes, keys of the manifest's ``extra`` section: their names (as
constants in its module, nowhere else), dtypes, shapes and every rule tying them to the rest of the set.
:meth:`Part.to_arrays` gives what the trainer stores; :meth:`Part.from_arrays` reads and validates what a
server loaded. :mod:`recsvc.artifacts.schema` lists the parts and is the one reader that validates a set.

Parts are read in registry order, so a part may ask the :class:`SetContext` for the parts read before it
(every part after the catalog knows ``n_items``, for instance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

import numpy as np

from recsvc.artifacts.errors import ArtifactError

P = TypeVar("P", bound="Part")


@dataclass
class SetContext:
    """What a part may know about the set it is read from: the manifest's channels and ``extra``, and the
    parts already read (in registry order)."""

    channels: tuple[str, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)
    parts: dict[type[Part], Part] = field(default_factory=dict)

    def get(self, kind: type[P]) -> P:
        """A part read earlier; a registry that orders parts wrongly fails here, loudly."""
        found = self.parts.get(kind)
        if found is None:
            raise ArtifactError(f"part {kind.NAME} is needed before it is read (registry order)")
        assert isinstance(found, kind)
        return found

    @property
    def n_channels(self) -> int:
        return len(self.channels)


class Part:
    """Base of every artifact part (subclasses are frozen dataclasses).

    Class attributes
    ----------------
    NAME
        The part's name in messages and in the contract test.
    REQUIRED
        Whether every set must hold it; an optional part is present when any of its arrays is.
    ARRAYS
        Every array name the part owns (``OPTIONAL_ARRAYS`` among them may be absent).
    EXTRA_KEYS
        The manifest ``extra`` keys the part owns.
    """

    NAME: ClassVar[str]
    REQUIRED: ClassVar[bool]
    ARRAYS: ClassVar[tuple[str, ...]]
    OPTIONAL_ARRAYS: ClassVar[tuple[str, ...]] = ()
    EXTRA_KEYS: ClassVar[tuple[str, ...]] = ()

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays to store (names from ``ARRAYS``; absent optional arrays are left out)."""
        raise NotImplementedError

    def to_extra(self) -> dict[str, Any]:
        """The manifest ``extra`` entries the part owns (none by default)."""
        return {}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> Self:
        """Read and validate the part; raise :class:`ArtifactError` naming the array and the rule."""
        raise NotImplementedError

    @classmethod
    def present_in(cls, arrays: Mapping[str, np.ndarray]) -> bool:
        """Whether ``arrays`` hold the part (an optional part is absent when none of its arrays is there)."""
        return any(name in arrays for name in cls.ARRAYS)

    @classmethod
    def missing_from(cls, arrays: Mapping[str, np.ndarray]) -> list[str]:
        """Names of the part's non-optional arrays that ``arrays`` lack."""
        return [name for name in cls.ARRAYS if name not in arrays and name not in cls.OPTIONAL_ARRAYS]


# --- checks shared by the parts ---------------------------------------------------------------------------

#: dtype kinds: ``U`` unicode ids, ``b`` bool, ``i`` signed int, ``iu`` any int, ``f`` float.
def array(arrays: Mapping[str, np.ndarray], name: str, kinds: str, shape: Sequence[int | None]) -> np.ndarray:
    """``arrays[name]``, checked for its dtype kind and shape (``None`` = any length on that axis)."""
    if name not in arrays:
        raise ArtifactError(f"array {name} is missing")
    value = arrays[name]
    if value.dtype.kind not in kinds or value.dtype == object:
        raise ArtifactError(f"array {name} has dtype {value.dtype}, expected kind {kinds!r}")
    got = value.shape
    if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got, strict=True)):
        raise ArtifactError(f"array {name} has shape {got}, expected {tuple(shape)}")
    return value


def optional_array(arrays: Mapping[str, np.ndarray], name: str, kinds: str,
                   shape: Sequence[int | None]) -> np.ndarray | None:
    """As :func:`array`, or None when the set does not hold ``name``."""
    return array(arrays, name, kinds, shape) if name in arrays else None


def sorted_unique(name: str, ids: np.ndarray) -> None:
    """Ids stored sorted and unique, so a row is found by binary search."""
    if ids.size > 1 and not np.all(ids[1:] > ids[:-1]):
        raise ArtifactError(f"{name} must be sorted and unique")


def rows_within(name: str, rows: np.ndarray, bound: int, allow_missing: bool = False) -> None:
    """Every entry a row in ``[0, bound)`` (or ``-1`` when ``allow_missing``)."""
    low = -1 if allow_missing else 0
    if rows.size and (rows.min() < low or rows.max() >= bound):
        raise ArtifactError(f"{name} holds rows outside [{low}, {bound})")


def finite(name: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise ArtifactError(f"{name} holds NaN or infinite values")


def csr_rows(name: str, indptr: np.ndarray) -> int:
    """Check a CSR row pointer (starts at 0, never decreases); returns the number of stored entries."""
    if indptr.size and (indptr[0] != 0 or np.any(np.diff(indptr) < 0)):
        raise ArtifactError(f"{name} is not a valid CSR row pointer")
    return int(indptr[-1]) if indptr.size else 0


def frozen(value: np.ndarray) -> np.ndarray:
    """A read-only view (the caller's array keeps its flags). Always a plain ndarray: a ``np.memmap`` would
    run its Python-level ``__array_finalize__`` on every slice the ranking code takes (~5 % of a Recommend)."""
    view = np.asarray(value).view()
    view.flags.writeable = False
    return view
