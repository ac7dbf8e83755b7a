"""The Upswing stack: composes one construct per capability and publishes what callers need."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from shared.resources import DETAILED_TRACING_ENV

from .archive import Archive
from .assets import LambdaAssets
from .attribution import Attribution
from .counting import Counting
from .delivery import Delivery
from .evaluation import Evaluation
from .function import LambdaPackage, dependencies_layer
from .ingest import BusIngest, IngestApi
from .observability import Observability
from .routing import Routing
from .settings import UpswingSettings
from .storage import Storage


class UpswingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        assets: LambdaAssets,
        settings: UpswingSettings,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("description", f"Upswing usage-based expansion triggers ({settings.stage})")
        kwargs.setdefault("tags", {"project": "upswing", "stage": settings.stage})
        super().__init__(scope, construct_id, **kwargs)

        package = LambdaPackage(
            code=assets.code,
            layer=dependencies_layer(self, "DependenciesLayer", assets.layer),
            environment={DETAILED_TRACING_ENV: str(settings.detailed_tracing).lower()},
        )
        storage = Storage(self, "Storage", deletion_protection=settings.is_prod)
        api = IngestApi(self, "IngestApi", package=package, storage=storage, settings=settings)
        bus = BusIngest(self, "BusIngest", package=package, storage=storage, settings=settings)
        counting = Counting(self, "Counting", package=package, storage=storage, settings=settings)
        evaluation = Evaluation(self, "Evaluation", package=package, storage=storage, settings=settings)
        api.allow_going_live(storage, evaluation.fired_queue)
        routing = Routing(
            self,
            "Routing",
            package=package,
            storage=storage,
            settings=settings,
            fired_queue=evaluation.fired_queue,
            event_bus=bus.event_bus,
        )
        attribution = Attribution(self, "Attribution", package=package, storage=storage, settings=settings)
        archive = Archive(self, "Archive", package=package, storage=storage, settings=settings)
        delivery = Delivery(
            self,
            "Delivery",
            package=package,
            storage=storage,
            settings=settings,
            hubspot_queue=routing.hubspot_queue,
            email_queue=routing.email_queue,
            webhook_queue=routing.webhook_queue,
            slack_queue=routing.slack_queue,
        )
        Observability(
            self,
            "Observability",
            stage=settings.stage,
            alarm_email=settings.alarm_email,
            functions={
                "Api": api.api_function.function,
                "Authorizer": api.authorizer_function.function,
                "BusIngest": bus.function.function,
                "Aggregator": counting.aggregator.function,
                "Evaluator": evaluation.evaluator.function,
                "Router": routing.router.function,
                "Scheduler": routing.scheduler.function,
                "HubSpotSender": delivery.hubspot_sender.function,
                "HubSpotPoller": delivery.hubspot_poller.function,
                "EmailSender": delivery.email_sender.function,
                "WebhookSender": delivery.webhook_sender.function,
                "SlackSender": delivery.slack_sender.function,
                "Attributor": attribution.attributor.function,
                "Archiver": archive.archiver.function,
            },
            stream_consumers={
                "Aggregator": counting.aggregator.function,
                "Evaluator": evaluation.evaluator.function,
                "Attributor": attribution.attributor.function,
                "Archiver": archive.archiver.function,
            },
            api_stage=api.rest_api.deployment_stage,
            dead_letter_queues={
                queue.node.id: queue
                for queue in (
                    *bus.dead_letter_queues,
                    *counting.dead_letter_queues,
                    *evaluation.dead_letter_queues,
                    *routing.dead_letter_queues,
                    *attribution.dead_letter_queues,
                    *archive.dead_letter_queues,
                )
            },
            rejects_queue=bus.rejects_queue,
        )

        CfnOutput(self, "ApiUrl", value=api.rest_api.url, description="Base URL; routes start with v1/")
        CfnOutput(self, "EventBusName", value=bus.event_bus.event_bus_name)
        for spec, table in storage.named_tables():
            CfnOutput(self, f"{spec.construct_id}TableName", value=table.table_name)
        CfnOutput(self, "RejectsQueueUrl", value=bus.rejects_queue.queue_url)
        CfnOutput(
            self,
            "ArchiveBucketName",
            value=archive.bucket.bucket_name,
            description="Accepted events as Parquet, events/day=YYYY-MM-DD/ (upswing backtest --from-stack)",
        )
        CfnOutput(
            self,
            "FiredQueueUrl",
            value=evaluation.fired_queue.queue_url,
            description="trigger.fired messages",
        )
        CfnOutput(
            self,
            "HubSpotSecretName",
            value=settings.hubspot_secret,
            description="Put the HubSpot private-app token in this secret",
        )
