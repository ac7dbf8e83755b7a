from pydantic import Field

from shared.events.ingest import IngestSettings
from shared.resources import REJECTS_QUEUE


class BusIngestSettings(IngestSettings):
    rejects_queue_url: str = Field(min_length=1, validation_alias=REJECTS_QUEUE.env_var)
