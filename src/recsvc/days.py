"""Day numbers, the unit of every date in the artifacts: days since 1970-01-01 (UTC), as int.

The trainer stores purchase days, the data cut-off and repurchase rhythms in this unit; the server compares
them with today and prints them as dates. Every conversion between the two lives here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

EPOCH = date(1970, 1, 1)
#: Milliseconds in a day: live events carry their time as milliseconds since 1970 (UTC).
MS_PER_DAY = 86_400_000


def day_of_date(value: date) -> int:
    """The day number of a calendar date."""
    return (value - EPOCH).days


def date_of_day(day: int) -> date:
    """The calendar date of a day number."""
    return EPOCH + timedelta(days=int(day))


def iso_of_day(day: int) -> str:
    """``YYYY-MM-DD`` of a day number, as artifacts and reports print dates."""
    return date_of_day(day).isoformat()


def day_of_iso(text: str) -> int:
    """The day number of an ISO date ``YYYY-MM-DD``; raises ValueError with the text when it is not one."""
    try:
        return day_of_date(date.fromisoformat(text))
    except ValueError:
        raise ValueError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def day_of_datetime(value: datetime) -> int:
    """The UTC day of an aware datetime (a naive one is taken as UTC); floors toward the past."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return day_of_date(value.astimezone(UTC).date())


def day_of_ms(ms: int) -> int:
    """The UTC day of a time in milliseconds since 1970; floors toward the past."""
    return ms // MS_PER_DAY


def ms_of_day(day: int) -> int:
    """Midnight UTC starting a day, in milliseconds since 1970."""
    return int(day) * MS_PER_DAY


def today(now: datetime | None = None) -> int:
    """Today's day number in UTC."""
    return day_of_datetime(now or datetime.now(UTC))
