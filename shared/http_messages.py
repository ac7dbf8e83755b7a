"""Texts the API answers with when API Gateway itself refuses a request (the authorizer said no).

The CDK stack puts them in API Gateway's gateway responses and the local stack answers with the
same words, so a producer sees one message wherever it runs.
"""

UNAUTHORIZED_MESSAGE = (
    "Missing or invalid producer key: send Authorization: Bearer <key>. "
    "Keys are issued with `upswing keys issue`."
)
FORBIDDEN_MESSAGE = "This producer key has been revoked or is not allowed here."
