"""How an id or a channel name read from outside becomes the one the model knows: one rule for trainer and server.

A loyalty card typed at a till, an id pasted into a CRM export or a channel spelled ``WEB`` by one caller and
``web`` by another must name the same thing on both sides of the artifact contract, or a customer silently
becomes unknown. The trainer applies these rules to every row it reads (vectorised: pandas' ``str.strip`` and
``str.lower`` are the same functions as Python's, element by element) and the server to every request, so the
two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable


def clean_id(value: str) -> str:
    """An id as stored: surrounding whitespace removed (``" C001 "`` -> ``"C001"``); case and inner spaces kept.

    Ids are case-sensitive (``c001`` and ``C001`` may be different customers in a retailer's systems), so only
    the whitespace a copy, a paste or a fixed-width export adds around an id is dropped.
    """
    return value.strip()


def clean_ids(values: Iterable[str]) -> list[str]:
    """:func:`clean_id` of each value, in order."""
    return [value.strip() for value in values]


def clean_channel(value: str) -> str:
    """A channel name as stored: trimmed and lower-cased (``" WEB "`` -> ``"web"``).

    Channel names are a small closed vocabulary chosen by the retailer, compared case-insensitively everywhere
    (as event types are).
    """
    return value.strip().lower()
