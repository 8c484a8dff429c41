"""Typed configuration: schema (nested pydantic models) and loader (YAML + ``a.b=c`` overrides)."""

from tuneforge.config.load import load_config, parse_overrides
from tuneforge.config.schema import Config

__all__ = ["Config", "load_config", "parse_overrides"]
