"""Typed, validated configs: an ml_collections ConfigDict checked against a frozen dataclass.

Every study describes its knobs as a frozen dataclass (nested dataclasses for sections). `parse`
turns a ConfigDict (or any mapping) into that dataclass before anything compiles, and stops with a
`ConfigError` that names the offending key for an unknown key, a missing key, a wrong type or an
impossible value. The frozen dataclass is hashable, so it can close over jitted functions as static data.

A dataclass states its value rules in a `checks()` method that yields `(key, ok, message)` triples;
the key is relative to the dataclass and is prefixed with its path in the error.

Which knobs define a run: every field does, unless it is marked execution-only with
`field(metadata={"run": False})` (`execution_only(default)` writes that): how often the host checks in,
logging, progress. `training_fingerprint(cfg)` is the config without those fields; checkpoints written
under another fingerprint belong to another run. A new field is part of the run unless it says otherwise.
A renamed key is listed in the dataclass's `RENAMED` ({old name: new name}, a class attribute without
annotation): `parse` accepts the old name with a one-line deprecation warning, and a config file's
ConfigDict keeps the old top-level names, unset, so that `--config.<old name>=...` still works.

Config files. Each default is written once, in the dataclass; a config file (configs/<study>.py) is one
call, `get_config = configuration.config_file(Cls, overrides, presets)`, where `overrides` maps dotted
keys to the values the file changes (omit it when it changes none) and `presets` names shrunk or
variant runs. The file's argument (`--config=configs/<study>.py:ARG`) is comma-separated parts (commas
inside brackets and quotes do not split):
  - `name`: a preset, applied in the order of `presets` whatever the order of the parts. A preset is a
    mapping of dotted keys to values, or a function that edits the config; its name may hold "="
    (`source=mono_poly`): whole names are matched first;
  - `dotted.key=value`: sets one key, the value read as a Python literal (3, 1e-3, True, (4, 8), 'x'),
    else kept as the string; applied after the presets;
  - `name=value` where the preset "name=" exists: calls that preset with the config and the value's text
    (a filter such as `arch=a+b`); applied last.
An unknown part stops with a ConfigError naming it and the valid ones. `--config.key=value` flags
(ml_collections) apply after all of these.
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
from absl import logging

from mpcodec.core.errors import ConfigError

T = TypeVar("T")

# Field metadata of an execution-only knob: it changes how a run is executed, not what it computes.
EXECUTION_ONLY = types.MappingProxyType({"run": False})


def execution_only(default: Any) -> Any:
  """A dataclass field left out of `training_fingerprint` (a check-in interval, logging, progress)."""
  return dataclasses.field(default=default, metadata=EXECUTION_ONLY)


def is_run_field(field: dataclasses.Field) -> bool:
  """Whether `field` decides what a run computes (every field unless its metadata says "run": False)."""
  return bool(field.metadata.get("run", True))


def training_fingerprint(cfg: Any) -> dict:
  """The config as a JSON-able dict without its execution-only fields, at every depth.

  Two configs with equal fingerprints train the same run, so each other's checkpoints; a field enters it
  unless marked `field(metadata={"run": False})`.
  """
  if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
    raise TypeError(f"training_fingerprint takes a config dataclass instance, got {type(cfg).__name__}")
  return {f.name: _fingerprint_value(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if is_run_field(f)}


def _fingerprint_value(value: Any) -> Any:
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return training_fingerprint(value)
  if isinstance(value, (tuple, list)):
    return [_fingerprint_value(v) for v in value]
  return value


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
      if items == [""]:   # `--config.key=` on the command line: the empty sequence
        items = []
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
  cfg = _renamed(cls, cfg, path)
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


def _renamed(cls: type, cfg: Mapping, path: str) -> Mapping:
  """`cfg` with the old names of `cls.RENAMED` given as their new names, each with a warning."""
  renamed = getattr(cls, "RENAMED", {})
  old_names = [old for old in renamed if old in cfg]
  if not old_names:
    return cfg
  cfg = dict(cfg)
  for old in old_names:
    new = renamed[old]
    if cfg[old] is None:   # the placeholder `config_file` keeps for the old name, left unset
      del cfg[old]
      continue
    logging.warning("%s.%s is deprecated: it is now %s.%s (the value given is used)", path, old, path, new)
    cfg[new] = cfg.pop(old)
  return cfg


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
              config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Applies a config file's argument `arg` to `config` and returns it (grammar: the module docstring).

  `presets` may hold presets that take a value under names ending in "=" ("arch=").
  """
  presets = dict(presets or {})
  options = {name[:-1]: presets.pop(name) for name in list(presets) if name.endswith("=")}
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


def config_file(cls: type, overrides: Mapping[str, Any] | None = None,
                presets: Mapping[str, Preset] | None = None) -> Callable[[str | None], ml_collections.ConfigDict]:
  """A config file's `get_config(arg=None)`: the defaults of dataclass `cls`, then `overrides` (dotted
  keys to values), then the argument `arg` with `presets` (grammar: the module docstring).

  The overrides are checked against `cls` here, so a config file with a misspelt key fails on import.
  """
  overrides, presets = dict(overrides or {}), dict(presets or {})
  override(defaults(cls), overrides)

  def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = override(defaults(cls), overrides)
    hints = typing.get_type_hints(cls)
    for old, new in getattr(cls, "RENAMED", {}).items():
      # The old name stays settable (--config.<old>=...; `parse` warns and uses it), unset by default.
      config[old] = ml_collections.FieldReference(None, field_type=hints[new])
    return parse_arg(arg, presets, config=config)

  get_config.__doc__ = (f"The {cls.__name__} defaults{', with the overrides' if overrides else ''}; `arg`: "
                        f"presets {sorted(presets)} or dotted.key=value parts (mpcodec.core.configuration).")
  return get_config


def _expected(presets: Mapping[str, Any], options: Mapping[str, Any]) -> str:
  names = " or ".join(repr(p) for p in presets)
  keys = f"key in {sorted(options)} or a config key" if options else "a config key"
  return f"expected {names + ' or ' if names else ''}key=value with {keys}"
