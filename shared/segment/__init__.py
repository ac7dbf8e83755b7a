"""Segment-compatible ingest: the Segment Spec's `track`, `group` and `batch` calls, mapped to usage
events and account profile fields by a mapping file (segment/mapping.yaml, docs/api.md "Segment").

The routes are the Segment HTTP Tracking API's own paths, so a Segment library or a Segment
destination pointed at Upswing works unchanged. Kept free of heavy imports: the authorizer reads
the paths below to scope a write key (HTTP Basic) to these routes only.
"""

SEGMENT_PATHS = ("/v1/track", "/v1/identify", "/v1/group", "/v1/batch")
