"""The limits of the producer contract (v1). docs/api.md quotes these numbers; keep them in step."""

from datetime import timedelta

MAX_EVENTS_PER_REQUEST = 500
MAX_BODY_BYTES = 1_048_576  # 1 MiB
MAX_PROPERTIES_BYTES = 8_192  # serialized JSON; keeps a ledger item within one write unit or two
MAX_DIMENSIONS = 16
MAX_ABS_VALUE = 1e15
# A nonzero value is at least this big: finer values mean nothing for usage, and with this floor
# every value and every sum the counters keep stays within what DynamoDB stores (38 significant
# digits, magnitudes from 1e-130 to 1e126), so a valid event never fails to be written.
MIN_ABS_VALUE = 1e-9
# Any JSON document we take in (POST bodies, bus messages): how deep arrays and objects may nest,
# and how long a number may be written. Python's json would otherwise crash on both.
MAX_NESTING_DEPTH = 32
MAX_INTEGER_DIGITS = 38  # DynamoDB's precision; nothing we keep needs more
MAX_NUMBER_LITERAL_CHARS = 64
# Clock skew we tolerate for events stamped slightly in the future.
FUTURE_TOLERANCE = timedelta(minutes=5)
# How far back an event may be: also how long the ledger remembers an event id, so a resend is
# either recognised as a duplicate or rejected as too old, never counted twice.
DEFAULT_RETENTION_DAYS = 400
