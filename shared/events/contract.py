"""The limits of the producer contract (v1). docs/api.md quotes these numbers; keep them in step."""

from datetime import timedelta

MAX_EVENTS_PER_REQUEST = 500
MAX_BODY_BYTES = 1_048_576  # 1 MiB
MAX_PROPERTIES_BYTES = 8_192  # serialized JSON; keeps a ledger item within one write unit or two
MAX_DIMENSIONS = 16
MAX_ABS_VALUE = 1e15
# Clock skew we tolerate for events stamped slightly in the future.
FUTURE_TOLERANCE = timedelta(minutes=5)
# How far back an event may be: also how long the ledger remembers an event id, so a resend is
# either recognised as a duplicate or rejected as too old, never counted twice.
DEFAULT_RETENTION_DAYS = 400
