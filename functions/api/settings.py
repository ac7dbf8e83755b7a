from pydantic import Field

from shared.events.ingest import IngestSettings
from shared.resources import ACCOUNTS_TABLE, COUNTERS_TABLE


class ApiSettings(IngestSettings):
    accounts_table: str = Field(min_length=1, validation_alias=ACCOUNTS_TABLE.env_var)
    counters_table: str = Field(min_length=1, validation_alias=COUNTERS_TABLE.env_var)
