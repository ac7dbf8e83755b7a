"""Texts the API answers with when API Gateway itself refuses a request (the authorizer said no).

The CDK stack puts them in API Gateway's gateway responses and the local stack answers with the
same words, so a producer sees one message wherever it runs.
"""

UNAUTHORIZED_MESSAGE = (
    "Missing or invalid producer key: send Authorization: Bearer <key>. "
    "Keys are issued with `upswing keys issue`."
)
# The authorizer never denies (a bad key is a 401; a missing scope is the API's own 403 naming it),
# so API Gateway answers this only if a policy is changed by hand.
FORBIDDEN_MESSAGE = "This key is not allowed to call this route."
