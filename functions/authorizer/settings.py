from pydantic import BaseModel, Field

from shared.resources import REGISTRY_TABLE


class AuthorizerSettings(BaseModel):
    registry_table: str = Field(min_length=1, validation_alias=REGISTRY_TABLE.env_var)
