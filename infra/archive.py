"""The events archive: accepted events, as date-partitioned Parquet on S3, kept past the ledger.

ledger stream (INSERT) → archiver fn → Firehose (JSON → Parquet with the Glue table's schema,
partitioned by the event's day) → S3 `events/day=YYYY-MM-DD/*.parquet`, KMS-encrypted with a key
of its own, expired by a lifecycle rule after `archive_retention_days`. `upswing backtest
--from-stack` reads it (docs/backtest.md); docs/decisions.md (52) says why Firehose.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.archive.layout import ARCHIVE_COLUMNS, EVENTS_PREFIX, PARTITION_KEY
from shared.resources import ARCHIVE_STREAM_ENV, ARCHIVER_FUNCTION, EVENTS_TABLE

from .acknowledge import acknowledge
from .function import LambdaPackage, UpswingFunction
from .settings import UpswingSettings
from .storage import Storage
from .streams import consume_stream

# Large buffers make few, large Parquet files (the reader lists a day's folder); Firehose's
# largest interval bounds how late an event lands in the archive (15 minutes).
BUFFER_MB = 128
BUFFER_SECONDS = 900


class Archive(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: LambdaPackage,
        storage: Storage,
        settings: UpswingSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts the Upswing events archive (S3 objects and the delivery stream)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,  # one KMS request per object, not per block: cheaper
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            removal_policy=RemovalPolicy.RETAIN,  # the history outlives a stack teardown
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="events-retention",
                    prefix=EVENTS_PREFIX,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(30),
                        )
                    ],
                    expiration=Duration.days(settings.archive_retention_days),
                ),
                s3.LifecycleRule(
                    id="failed-records",
                    prefix="errors/",
                    expiration=Duration.days(30),
                ),
                s3.LifecycleRule(
                    id="incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)
                ),
            ],
        )
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "Written only by the archive's delivery stream and read by `upswing backtest`; every API "
            "call on it is in CloudTrail, and a server access log bucket would add a second bucket "
            "to retain and secure for no reader.",
        )

        database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=Aws.ACCOUNT_ID,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=f"upswing_{settings.stage.replace('-', '_')}",
                description="Upswing: the events archive's schema (Firehose converts to Parquet with it)",
            ),
        )
        table = glue.CfnTable(
            self,
            "EventsTable",
            catalog_id=Aws.ACCOUNT_ID,
            database_name=database.ref,
            table_input=glue.CfnTable.TableInputProperty(
                name="events",
                description="Accepted events, one row each; at least once: keep one row per "
                "(account_id, event_id)",
                table_type="EXTERNAL_TABLE",
                parameters={"classification": "parquet"},
                partition_keys=[glue.CfnTable.ColumnProperty(name=PARTITION_KEY, type="string")],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[
                        glue.CfnTable.ColumnProperty(name=name, type=kind) for name, kind in ARCHIVE_COLUMNS
                    ],
                    location=self.bucket.s3_url_for_object(EVENTS_PREFIX),
                    input_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                    ),
                ),
            ),
        )

        errors = logs.LogGroup(
            self, "DeliveryLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.RETAIN
        )
        delivery_role = iam.Role(
            self,
            "DeliveryRole",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"sts:ExternalId": Aws.ACCOUNT_ID}}
            ),
            description="Lets the archive's delivery stream write Parquet to its bucket",
        )
        # What Firehose's S3 destination needs (its documented policy), on this bucket and key only.
        delivery_role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                resources=[self.bucket.bucket_arn],
            )
        )
        objects = self.bucket.arn_for_objects("*")
        delivery_role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"], resources=[objects]
            )
        )
        delivery_role.add_to_policy(
            iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[self.key.key_arn])
        )
        delivery_role.add_to_policy(
            iam.PolicyStatement(
                actions=["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"],
                resources=[
                    stack.format_arn(service="glue", resource="catalog"),
                    stack.format_arn(service="glue", resource="database", resource_name=database.ref),
                    stack.format_arn(
                        service="glue", resource="table", resource_name=f"{database.ref}/events"
                    ),
                ],
            )
        )
        delivery_role.add_to_policy(
            iam.PolicyStatement(actions=["logs:PutLogEvents"], resources=[errors.log_group_arn])
        )
        bucket_id = stack.get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        acknowledge(
            delivery_role,
            f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/*]",
            "Object-level S3 actions name objects: the delivery stream writes a new object per buffer, "
            "under a folder per event day, in this one bucket (no other bucket, no other action).",
        )

        self.delivery_stream = firehose.CfnDeliveryStream(
            self,
            "DeliveryStream",
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="CUSTOMER_MANAGED_CMK", key_arn=self.key.key_arn
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=self.bucket.bucket_arn,
                role_arn=delivery_role.role_arn,
                prefix=f"{EVENTS_PREFIX}{PARTITION_KEY}=!{{partitionKeyFromQuery:{PARTITION_KEY}}}/",
                error_output_prefix="errors/!{firehose:error-output-type}/!{timestamp:yyyy-MM-dd}/",
                file_extension=".parquet",
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    size_in_m_bs=BUFFER_MB, interval_in_seconds=BUFFER_SECONDS
                ),
                encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                    kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                        awskms_key_arn=self.key.key_arn
                    )
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True, log_group_name=errors.log_group_name, log_stream_name="delivery"
                ),
                dynamic_partitioning_configuration=firehose.CfnDeliveryStream.DynamicPartitioningConfigurationProperty(
                    enabled=True,
                    retry_options=firehose.CfnDeliveryStream.RetryOptionsProperty(duration_in_seconds=300),
                ),
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True,
                    processors=[
                        firehose.CfnDeliveryStream.ProcessorProperty(
                            type="MetadataExtraction",
                            parameters=[
                                firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                    parameter_name="MetadataExtractionQuery",
                                    parameter_value=f"{{{PARTITION_KEY}: .{PARTITION_KEY}}}",
                                ),
                                firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                    parameter_name="JsonParsingEngine", parameter_value="JQ-1.6"
                                ),
                            ],
                        )
                    ],
                ),
                data_format_conversion_configuration=firehose.CfnDeliveryStream.DataFormatConversionConfigurationProperty(
                    enabled=True,
                    input_format_configuration=firehose.CfnDeliveryStream.InputFormatConfigurationProperty(
                        deserializer=firehose.CfnDeliveryStream.DeserializerProperty(
                            open_x_json_ser_de=firehose.CfnDeliveryStream.OpenXJsonSerDeProperty()
                        )
                    ),
                    output_format_configuration=firehose.CfnDeliveryStream.OutputFormatConfigurationProperty(
                        serializer=firehose.CfnDeliveryStream.SerializerProperty(
                            parquet_ser_de=firehose.CfnDeliveryStream.ParquetSerDeProperty(
                                compression="SNAPPY"
                            )
                        )
                    ),
                    schema_configuration=firehose.CfnDeliveryStream.SchemaConfigurationProperty(
                        catalog_id=Aws.ACCOUNT_ID,
                        database_name=database.ref,
                        table_name=table.ref,
                        region=Aws.REGION,
                        role_arn=delivery_role.role_arn,
                        version_id="LATEST",
                    ),
                ),
            ),
        )
        # The role's policy must exist before the stream checks it can write.
        self.delivery_stream.node.add_dependency(delivery_role)

        self.archiver = UpswingFunction(
            self,
            "Archiver",
            spec=ARCHIVER_FUNCTION,
            package=package,
            description="Puts accepted events on the archive's delivery stream",
            environment={ARCHIVE_STREAM_ENV: self.delivery_stream.ref},
            wildcard_resource_reasons=(
                "The DynamoDB stream event source also needs dynamodb:ListStreams, which cannot "
                "be scoped to a table (CDK grant_stream_read); reading records is scoped to the "
                "events table's stream.",
            ),
        )
        self.archiver.allow(["firehose:PutRecordBatch"], self.delivery_stream.attr_arn)
        self.failures: sqs.IQueue = consume_stream(
            self,
            "ArchiverFailures",
            self.archiver.function,
            storage.table(EVENTS_TABLE),
            event_names=("INSERT",),
            batch_size=500,
            used_by="on-failure destination of the archiver's stream mapping",
        )
        self.dead_letter_queues: list[sqs.IQueue] = [self.failures]
