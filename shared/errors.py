"""Domain errors the services share, free of any adapter: adapters raise them, services decide.

A service never catches a botocore error: the adapter that talks to the store turns "the store
could not answer now" into `StorageUnavailable`, and the service answers it (a 503, a batch item
failure, a retry later), whichever store it was.
"""

from __future__ import annotations


class StorageUnavailable(Exception):
    """The store could not take or give the data now (throttled, timed out, an internal error):
    the call wrote nothing it would not write again, and trying later is safe."""
