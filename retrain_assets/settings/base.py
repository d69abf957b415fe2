"""What every config section shares: a strict pydantic model, and the error a config mistake raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SettingsError(ValueError):
    """The config file is missing, unreadable or invalid; the message says where and why."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
