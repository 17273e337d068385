"""The trainer's input contract: file names, column names and event types, in one place.

A data folder holds ``events``, ``items`` and optionally ``customers``, ``identities`` and ``stock``, each as
``<name>.csv``, ``<name>.csv.gz``, ``<name>.parquet`` (one file per table). Ids are read as strings
(leading zeros matter).
"""

from __future__ import annotations

from typing import Final

# Table names (file stems inside a data folder).
EVENTS: Final = "events"
ITEMS: Final = "items"
CUSTOMERS: Final = "customers"
IDENTITIES: Final = "identities"
STOCK: Final = "stock"
TABLE_SUFFIXES: Final = (".csv", ".csv.gz", ".parquet")

# events
TIMESTAMP: Final = "timestamp"
CUSTOMER_ID: Final = "customer_id"
ITEM_ID: Final = "item_id"
EVENT: Final = "event"
CHANNEL: Final = "channel"
STORE_ID: Final = "store_id"
ORDER_ID: Final = "order_id"
QUANTITY: Final = "quantity"
PRICE: Final = "price"
EVENT_COLUMNS: Final = (TIMESTAMP, CUSTOMER_ID, ITEM_ID, EVENT, CHANNEL, STORE_ID, ORDER_ID, QUANTITY, PRICE)
REQUIRED_EVENT_COLUMNS: Final = (TIMESTAMP, CUSTOMER_ID, ITEM_ID, EVENT)

# event types
VIEW: Final = "view"
CART: Final = "cart"
PURCHASE: Final = "purchase"
RETURN: Final = "return"
EVENT_TYPES: Final = (VIEW, CART, PURCHASE, RETURN)
#: Feedback on served answers (issue 18): accepted in an events table (not quarantined) and dropped before
#: any model, so an impression never counts as interest; impressions without clicks are not used as negatives.
FEEDBACK_EVENT_TYPES: Final = ("impression", "click", "message_sent")

# items (catalog); any other column is an item attribute
TITLE: Final = "title"
CATEGORY: Final = "category"
CHANNELS: Final = "channels"  # "web|app|store"; empty = sold on every channel
CHANNEL_SEPARATOR: Final = "|"
ITEM_COLUMNS: Final = (ITEM_ID, TITLE, CATEGORY, PRICE, CHANNELS)
REQUIRED_ITEM_COLUMNS: Final = (ITEM_ID,)

# customers (optional); any other column is a customer attribute
CUSTOMER_COLUMNS: Final = (CUSTOMER_ID,)

# identities (optional): an alias (loyalty card, app install, e-mail hash) that belongs to one customer
ALIAS_ID: Final = "alias_id"
IDENTITY_COLUMNS: Final = (ALIAS_ID, CUSTOMER_ID)

# stock (optional): quantity on hand per store
QUANTITY_ON_HAND: Final = "quantity_on_hand"
STOCK_COLUMNS: Final = (STORE_ID, ITEM_ID, QUANTITY_ON_HAND)

# Derived columns the trainer adds to cleaned events.
DAY: Final = "day"            # int days since 1970-01-01
BASKET_ID: Final = "basket_id"  # order_id, or customer x day where there is none

# Quarantine reasons (one row each in quarantine files; counted per reason in the run summary).
REASON_MISSING_ID: Final = "missing_id"
REASON_UNKNOWN_EVENT: Final = "unknown_event"
REASON_BAD_TIMESTAMP: Final = "bad_timestamp"
REASON_FUTURE_TIMESTAMP: Final = "future_timestamp"
REASON_ANCIENT_TIMESTAMP: Final = "ancient_timestamp"
REASON_BAD_QUANTITY: Final = "bad_quantity"
REASON_DUPLICATE: Final = "duplicate"
