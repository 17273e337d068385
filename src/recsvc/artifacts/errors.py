"""The one error every artifact reader raises."""

from __future__ import annotations


class ArtifactError(Exception):
    """An artifact set is missing, corrupt or inconsistent; the message says which file and why."""
