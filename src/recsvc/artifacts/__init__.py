"""The artifact set: the one contract between the trainer (writer) and the server (reader).

An artifact set is a folder of ``.npy`` arrays plus ``manifest.json``, published as one version of a store.
This package owns all of it, and the trainer and the server meet nowhere else:

* :mod:`.store` — where sets live: the :class:`ArtifactStore` interface (publish a set atomically, the
  ``CURRENT`` pointer, list and prune versions, open one to read), its local-disk implementation and
  :func:`open_store`, which picks it or :mod:`.object_store` (a URL root, through fsspec) from a root;
* :mod:`.artifact_set` — one set in memory (:class:`ArtifactSet`) and on disk: the manifest, checksums,
  schema versions;
* :mod:`.schema` — the registry of parts and the one reader that validates every part of a set;
* :mod:`.parts` — one frozen dataclass per part, each the owner of its array names, dtypes and shapes (their
  module docstrings are the tables of arrays);
* :mod:`.stock` — the stock snapshots pushed between trainings, and which catalog each belongs to.

Item and customer ids are stored **sorted**, so an id's row is found with ``np.searchsorted`` (see
:class:`IdIndex`) instead of a Python dict on the hot path.
"""

from recsvc.artifacts.artifact_set import (
    MANIFEST,
    SCHEMA_VERSION,
    ArtifactSet,
    fingerprint_files,
    load_artifact_set,
    read_manifest,
    sha256_file,
    write_artifact_set,
)
from recsvc.artifacts.errors import ArtifactError
from recsvc.artifacts.schema import PARTS, REQUIRED_ARRAYS, Parts, read_parts
from recsvc.artifacts.store import (
    CURRENT,
    VERSIONS,
    ArtifactStore,
    LocalArtifactStore,
    current_version,
    list_versions,
    load_current,
    new_version_name,
    open_store,
    prune_versions,
    publish_artifacts,
    set_current,
)
from recsvc.artifacts.values import IdIndex, string_array

__all__ = [
    "CURRENT",
    "MANIFEST",
    "PARTS",
    "REQUIRED_ARRAYS",
    "SCHEMA_VERSION",
    "VERSIONS",
    "ArtifactError",
    "ArtifactSet",
    "ArtifactStore",
    "IdIndex",
    "LocalArtifactStore",
    "Parts",
    "current_version",
    "fingerprint_files",
    "list_versions",
    "load_artifact_set",
    "load_current",
    "new_version_name",
    "open_store",
    "prune_versions",
    "publish_artifacts",
    "read_manifest",
    "read_parts",
    "set_current",
    "sha256_file",
    "string_array",
    "write_artifact_set",
]
