"""The Powertools logger, metrics and tracer every function shares.

Logs carry ids and counts, never event properties, dimension values, owner emails or keys.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

from shared.resources import METRICS_NAMESPACE, SERVICE_NAME

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
