"""The base of every config block: frozen, and unknown keys are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
