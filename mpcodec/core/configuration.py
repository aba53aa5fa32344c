"""Typed, validated configs: an ml_collections ConfigDict checked against a frozen dataclass.

Every experiment describes its knobs as a frozen dataclass (nested dataclasses for sections). `parse`
turns a ConfigDict (or any mapping) into that dataclass before anything compiles, and stops with a
`ConfigError` that names the offending key for an unknown key, a missing key, a wrong type or an
impossible value. The frozen dataclass is hashable, so it can close over jitted functions as static data.

A dataclass states its value rules in a `checks()` method that yields `(key, ok, message)` triples;
the key is relative to the dataclass and is prefixed with its path in the error.

Each default is written once, in the dataclass: a config file (configs/<study>.py) starts from
`defaults(cls)`, sets only the keys it means to change (`override`, dotted keys), and reads its
command-line argument with the shared `parse_arg` (presets such as "smoke" and key=value pairs).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar, Union

import ml_collections

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


# ----------------------------------------------------------------------------------------------------
# Config files: defaults from the dataclass, dotted overrides, and the shared parser of the argument.

Preset = Union[Callable[[ml_collections.ConfigDict], None], Mapping[str, Any]]


def defaults(cls: type) -> ml_collections.ConfigDict:
  """A ConfigDict of every field's default of dataclass `cls`.

  A field whose default is a dataclass instance becomes a nested ConfigDict of that instance's values
  (so `PhaseConfig(task="xor")` keeps task "xor"); tuples stay tuples; an int default of a float field
  is stored as a float, so that a later float override of it is accepted.
  """
  hints = typing.get_type_hints(cls)
  values = {}
  for field in dataclasses.fields(cls):
    if field.default is not dataclasses.MISSING:
      value = field.default
    elif field.default_factory is not dataclasses.MISSING:
      value = field.default_factory()
    else:
      raise TypeError(f"{cls.__name__}.{field.name} has no default: a config file cannot start from it")
    values[field.name] = _default_value(value, hints[field.name])
  return ml_collections.ConfigDict(values)


def _default_value(value: Any, tp: Any) -> Any:
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    hints = typing.get_type_hints(type(value))
    return ml_collections.ConfigDict({f.name: _default_value(getattr(value, f.name), hints[f.name])
                                      for f in dataclasses.fields(value)})
  if tp is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  return value


def _section_and_name(cfg: ml_collections.ConfigDict, key: str) -> tuple[ml_collections.ConfigDict, str]:
  """The section holding dotted `key` and the key's last name; ConfigError if any name is unknown."""
  names = key.split(".")
  section, path = cfg, []
  for name in names:
    if not isinstance(section, ml_collections.ConfigDict):
      raise ConfigError(f"{key}: {'.'.join(path)} is a value, not a section")
    if name not in section:
      where = f"in {'.'.join(path)} " if path else ""
      raise ConfigError(f"{key}: unknown key {name!r}; valid keys {where}are {sorted(section.keys())}")
    if len(path) == len(names) - 1:
      return section, name
    section = section[name]
    path.append(name)
  raise ConfigError(f"{key!r}: empty key")   # not reached: split always yields a name


def override(cfg: ml_collections.ConfigDict, values: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Sets dotted keys ("sae.optim.learning_rate") of `cfg` in place and returns it.

  Every key must name an existing value (not a section), else ConfigError lists the valid keys. The
  value replaces the default as given (a list stays a list); its type is checked later by `parse`,
  except that an int given for a float default is stored as a float.
  """
  for key, value in values.items():
    value = copy.deepcopy(value)   # the config never shares a list with the caller's mapping
    section, name = _section_and_name(cfg, key)
    old = section[name]
    if isinstance(old, ml_collections.ConfigDict):
      raise ConfigError(f"{key}: is a section; set its keys instead ({sorted(old.keys())})")
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    del section[name]   # no ConfigDict type cast (it would turn a list into the default's tuple)
    section[name] = value
  return cfg


def lookup(cfg: ml_collections.ConfigDict, key: str) -> Any:
  """The value of dotted `key` in `cfg`; ConfigError naming the valid keys if it is not there."""
  section, name = _section_and_name(cfg, key)
  return section[name]


def literal(text: str) -> Any:
  """`text` read as a Python literal (3, 0.5, True, None, (4, 8), 'a'), else the string itself."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    return text


def split_arg(arg: str | None) -> list[str]:
  """Splits a config argument at the commas outside brackets and quotes: "a=(1, 2),b" -> 2 parts."""
  parts, depth, quote, start = [], 0, "", 0
  text = arg or ""
  for i, char in enumerate(text):
    if quote:
      quote = "" if char == quote else quote
    elif char in "'\"":
      quote = char
    elif char in "([{":
      depth += 1
    elif char in ")]}":
      depth -= 1
    elif char == "," and depth == 0:
      parts.append(text[start:i])
      start = i + 1
  parts.append(text[start:])
  return [part.strip() for part in parts if part.strip()]


def parse_arg(arg: str | None, presets: Mapping[str, Preset] | None = None, *,
              config: ml_collections.ConfigDict,
              options: Mapping[str, Callable[[ml_collections.ConfigDict, Any], None]] | None = None
              ) -> ml_collections.ConfigDict:
  """Applies a config file's argument (the text after `configs/<study>.py:`) to `config`; returns it.

  `arg` holds comma-separated parts; None or "" changes nothing. A part is
    - the name of a preset ("smoke"): a mapping of dotted keys to values, or a callable that edits the
      config. A preset's name may hold "=" (the codec's "source=mono_poly"): names are matched first;
    - key=value with `key` an option of the config file (a callable taking the config and the value's
      text, such as the dynamics grid's arch=a+b filter), or a dotted config key (base.num_seeds=3)
      whose value is read as a Python literal (3, 1e-3, True, (4, 8), 'x'), else kept as the string.
  The parts apply in a fixed order, whatever their order in `arg`: the presets named (in the order of
  `presets`), then the config keys (as written), then the options (in the order of `options`).
  An unknown preset, option or key raises ConfigError naming it and the valid ones.
  """
  presets, options = dict(presets or {}), dict(options or {})
  chosen, pairs, given = set(), {}, {}
  for part in split_arg(arg):
    if part in presets:
      chosen.add(part)
      continue
    key, sep, text = part.partition("=")
    key = key.strip()
    if not sep or not key:
      raise ConfigError(f"config argument {part!r}: unknown preset; {_expected(presets, options)}")
    if key in options:
      given[key] = text.strip()
      continue
    named = sorted(p for p in presets if p.startswith(f"{key}="))
    if named:
      raise ConfigError(f"config argument {part!r}: unknown value for {key!r}; valid: {named}")
    try:
      _section_and_name(config, key)
    except ConfigError as e:
      raise ConfigError(f"config argument {part!r}: {e}; {_expected(presets, options)}") from None
    pairs[key] = literal(text.strip())
  for name, preset in presets.items():
    if name in chosen:
      if callable(preset):
        preset(config)
      else:
        override(config, preset)
  override(config, pairs)
  for name, option in options.items():
    if name in given:
      option(config, given[name])
  return config


def _expected(presets: Mapping[str, Any], options: Mapping[str, Any]) -> str:
  names = " or ".join(repr(p) for p in presets)
  keys = f"key in {sorted(options)} or a config key" if options else "a config key"
  return f"expected {names + ' or ' if names else ''}key=value with {keys}"
