"""Typed, validated configs: an ml_collections ConfigDict checked against a frozen dataclass.

Every experiment describes its knobs as a frozen dataclass (nested dataclasses for sections). `parse`
turns a ConfigDict (or any mapping) into that dataclass before anything compiles, and stops with a
`ConfigError` that names the offending key for an unknown key, a missing key, a wrong type or an
impossible value. The frozen dataclass is hashable, so it can close over jitted functions as static data.

A dataclass states its value rules in a `checks()` method that yields `(key, ok, message)` triples;
the key is relative to the dataclass and is prefixed with its path in the error.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, Union

from mpcodec.core.errors import ConfigError

T = TypeVar("T")




def _type_name(tp: Any) -> str:
  return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, path: str) -> Any:
  """Returns `value` as type `tp`, or raises ConfigError naming `path`."""
  origin = typing.get_origin(tp)
  args = typing.get_args(tp)
  if dataclasses.is_dataclass(tp):
    if not isinstance(value, Mapping) and not hasattr(value, "items"):
      raise ConfigError(f"{path}: expected a section (ConfigDict/dict), got {type(value).__name__}")
    return parse(tp, value, path)
  if origin in (Union, types.UnionType):
    if value is None and type(None) in args:
      return None
    errors = []
    for arg in args:
      if arg is type(None):
        continue
      try:
        return _coerce(value, arg, path)
      except ConfigError as e:
        errors.append(str(e))
    raise ConfigError(f"{path}: {value!r} matches none of {_type_name(tp)}")
  if origin is Literal:
    if value not in args:
      raise ConfigError(f"{path}: {value!r} is not one of {list(args)}")
    return value
  if origin is tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
      raise ConfigError(f"{path}: expected a sequence, got {type(value).__name__} {value!r}")
    items = list(value)
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(items))
    if len(items) != len(args):
      raise ConfigError(f"{path}: expected {len(args)} items, got {len(items)}")
    return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(items, args)))
  if tp is bool:
    if not isinstance(value, bool):
      raise ConfigError(f"{path}: expected bool, got {type(value).__name__} {value!r}")
    return value
  if tp is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise ConfigError(f"{path}: expected int, got {type(value).__name__} {value!r}")
    return int(value)
  if tp is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ConfigError(f"{path}: expected float, got {type(value).__name__} {value!r}")
    return float(value)
  if tp is str:
    if not isinstance(value, str):
      raise ConfigError(f"{path}: expected str, got {type(value).__name__} {value!r}")
    return value
  if tp is Any:
    return value
  raise TypeError(f"{path}: unsupported field type {tp!r} in config dataclass")


def parse(cls: type[T], cfg: Any, path: str = "config") -> T:
  """Builds dataclass `cls` from mapping `cfg`; raises ConfigError naming the key on any problem."""
  if hasattr(cfg, "to_dict"):
    cfg = cfg.to_dict()
  if not isinstance(cfg, Mapping):
    raise ConfigError(f"{path}: expected a section, got {type(cfg).__name__}")
  hints = typing.get_type_hints(cls)
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(cfg) - set(fields))
  if unknown:
    raise ConfigError(f"{path}.{unknown[0]}: unknown key; valid keys here are {sorted(fields)}")
  values = {}
  for name, field in fields.items():
    key = f"{path}.{name}"
    if name in cfg:
      value = cfg[name]
      default = field.default
      if dataclasses.is_dataclass(default) and hasattr(value, "items"):
        # A partly given section keeps the parent's defaults for the keys it leaves out.
        value = {**to_dict(default), **(value.to_dict() if hasattr(value, "to_dict") else dict(value))}
      values[name] = _coerce(value, hints[name], key)
    elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
      raise ConfigError(f"{key}: missing required key")
  obj = cls(**values)
  check_values(obj, path)
  return obj


def check_values(obj: Any, path: str = "config") -> None:
  """Runs `obj.checks()` (if any) and raises ConfigError for the first rule that fails."""
  checks = getattr(obj, "checks", None)
  if checks is None:
    return
  for key, ok, message in checks():
    if not ok:
      raise ConfigError(f"{path}.{key}: {message}")


def to_dict(obj: Any) -> Any:
  """Dataclass (nested) -> plain JSON-able dict; tuples become lists."""
  if dataclasses.is_dataclass(obj):
    return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
  if isinstance(obj, (tuple, list)):
    return [to_dict(v) for v in obj]
  return obj


def to_json(obj: Any) -> str:
  """Canonical JSON of a config dataclass (sorted keys), used to compare configs of runs."""
  return json.dumps(to_dict(obj), sort_keys=True, indent=2)
