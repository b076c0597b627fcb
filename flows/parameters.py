"""Parameter types the flows share: their bounds are checked by Prefect and shown in the UI's run form."""

from typing import Annotated

from pydantic import Field

Score = Annotated[float, Field(ge=0, le=100)]  # a factor-model strength
Count = Annotated[int, Field(ge=0, le=100)]  # positions to open in one run
