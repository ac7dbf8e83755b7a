from pydantic import BaseModel, Field

from shared.resources import ARCHIVE_STREAM_ENV


class ArchiverSettings(BaseModel):
    # The Firehose delivery stream that writes the Parquet archive (infra/archive.py).
    delivery_stream: str = Field(min_length=1, validation_alias=ARCHIVE_STREAM_ENV)
