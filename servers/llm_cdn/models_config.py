"""The LLM model list (``VSM_LLM_MODELS``): a YAML/JSON file path or inline JSON.

::

    models:
      - name: fast                 # what clients ask for
        target: openai/gpt-4o-mini # litellm model string (provider/model)
        api_base: https://api.openai.com/v1
        api_key_env: OPENAI_API_KEY  # or api_key: literal (avoid)
        timeout_s: 30
        ttl_s: 3600                # cache lifetime of this model's answers
        fallbacks: [backup]        # tried in order when this model's provider fails
        kind: chat                 # chat | embedding
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vsm_mcp.errors import ConfigError

_KNOWN_KEYS = {"name", "target", "api_base", "api_key", "api_key_env", "timeout_s", "ttl_s", "fallbacks", "kind"}


@dataclass(frozen=True)
class ModelSpec:
    """One configured model."""

    name: str
    target: str
    api_base: str = ""
    api_key: str = ""
    timeout_s: float | None = None
    ttl_s: float | None = None
    fallbacks: tuple[str, ...] = ()
    kind: str = "chat"

    @property
    def provider(self) -> str:
        """The circuit-breaker unit: the endpoint when one is set, else the litellm provider prefix."""
        return self.api_base or self.target.split("/", 1)[0]


@dataclass
class ModelTable:
    models: dict[str, ModelSpec] = field(default_factory=dict)

    def get(self, name: str) -> ModelSpec | None:
        return self.models.get(name)

    def names(self) -> list[str]:
        return list(self.models)


def _spec(raw: Any, where: str) -> ModelSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: each model must be a mapping with at least 'name' and 'target'")
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}; known: {', '.join(sorted(_KNOWN_KEYS))}")
    name, target = raw.get("name"), raw.get("target")
    if not isinstance(name, str) or not name or not isinstance(target, str) or not target:
        raise ConfigError(f"{where}: 'name' and 'target' must be non-empty strings")
    if raw.get("kind", "chat") not in ("chat", "embedding"):
        raise ConfigError(f"{where} ({name}): kind must be 'chat' or 'embedding'")
    fallbacks = raw.get("fallbacks") or []
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise ConfigError(f"{where} ({name}): fallbacks must be a list of model names")
    key = raw.get("api_key") or (os.environ.get(raw["api_key_env"], "") if raw.get("api_key_env") else "")
    try:
        timeout = float(raw["timeout_s"]) if raw.get("timeout_s") is not None else None
        ttl = float(raw["ttl_s"]) if raw.get("ttl_s") is not None else None
    except (TypeError, ValueError):
        raise ConfigError(f"{where} ({name}): timeout_s and ttl_s must be numbers") from None
    return ModelSpec(
        name=name, target=target, api_base=str(raw.get("api_base") or ""), api_key=str(key),
        timeout_s=timeout, ttl_s=ttl, fallbacks=tuple(fallbacks), kind=str(raw.get("kind", "chat")),
    )


def parse_models(data: Any, where: str = "VSM_LLM_MODELS") -> ModelTable:
    """Validate a decoded model list (``{"models": [...]}`` or a bare list)."""
    items = data.get("models") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a list of models or a mapping with a 'models' list")
    table = ModelTable()
    for i, raw in enumerate(items):
        spec = _spec(raw, f"{where} model #{i + 1}")
        if spec.name in table.models:
            raise ConfigError(f"{where}: model {spec.name!r} is defined twice")
        table.models[spec.name] = spec
    for spec in table.models.values():
        for fb in spec.fallbacks:
            if fb not in table.models:
                raise ConfigError(f"{where}: model {spec.name!r} falls back to unknown model {fb!r}")
    return table


def load_models(value: str) -> ModelTable:
    """``value`` is empty, inline JSON, or a path to a .yaml/.yml/.json file."""
    value = value.strip()
    if not value:
        return ModelTable()
    if value[0] in "[{":
        try:
            return parse_models(json.loads(value))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"VSM_LLM_MODELS: invalid inline JSON: {exc}") from None
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"VSM_LLM_MODELS: no such file {value!r}")
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise ConfigError(f"VSM_LLM_MODELS: cannot parse {value}: {str(exc).splitlines()[0]}") from None
    return parse_models(data, where=str(path))
