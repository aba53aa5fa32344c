"""Pretrained weights into a Flax parameter tree through a table of name rules (numpy only, no PyTorch).

A `WeightRule` maps source tensor names matching its regular expression to one parameter path of the
model (a template that may use the pattern's groups, `block_\\1/query/kernel`) through a named transform
(identity, transpose of a PyTorch Linear weight). `convert` applies the table to every tensor of a
checkpoint and checks the result against the model's own parameter shapes (from `jax.eval_shape` of
its init), collecting every problem before raising one error that names each of them: a parameter no
tensor fills, a tensor whose shape (after its transform) differs from the parameter's, a tensor no
rule claims (unless listed as ignored), two tensors filling one parameter, a rule naming a parameter the
model does not have.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from mpcodec.core.errors import CheckpointError


class PretrainedWeightsError(CheckpointError):
  """A pretrained checkpoint does not fit the model: missing, mis-shaped or unclaimed tensors."""


@dataclasses.dataclass(frozen=True)
class Transform:
  """A named array transform applied to a source tensor before it is placed."""

  name: str
  fn: Callable[[np.ndarray], np.ndarray]


IDENTITY = Transform("identity", lambda w: w)
# PyTorch's Linear stores (out, in); a Flax Dense kernel is (in, out).
LINEAR_TO_KERNEL = Transform("transpose", lambda w: np.ascontiguousarray(w.T))


@dataclasses.dataclass(frozen=True)
class WeightRule:
  """Source tensors fully matching `pattern` fill the parameter at `target` ('/'-separated path)."""

  pattern: str
  target: str
  transform: Transform = IDENTITY


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Every tensor of a .safetensors file as a numpy array; a missing or unreadable file is one error."""
  path = os.fspath(path)
  # Imported here: safetensors is an optional extra ([lm]).
  try:
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise PretrainedWeightsError("reading pretrained weights needs the safetensors package: "
                                 "pip install -e .[lm]") from None
  if not os.path.isfile(path):
    raise PretrainedWeightsError(f"{path}: weights file not found")
  try:
    return load_file(path)
  except Exception as e:  # The format's own errors have no common base class.
    raise PretrainedWeightsError(f"{path}: not a readable safetensors file: {e}") from None


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    path = f"{prefix}/{key}" if prefix else str(key)
    if isinstance(value, Mapping):
      flat.update(_flatten(value, path))
    else:
      flat[path] = value
  return flat


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return tree


def _match(rules: Sequence[WeightRule], name: str) -> list[tuple[str, Transform]]:
  out = []
  for rule in rules:
    match = re.fullmatch(rule.pattern, name)
    if match:
      out.append((match.expand(rule.target), rule.transform))
  return out


def convert(tensors: Mapping[str, np.ndarray], rules: Sequence[WeightRule], expected: Mapping[str, Any],
            ignore: Sequence[str] = (), source: str = "checkpoint") -> dict[str, Any]:
  """The parameter tree of shape `expected` (nested dict of arrays or ShapeDtypeStructs) from `tensors`.

  `ignore` holds patterns of source tensors the model does not use (buffers, unused heads). Values are
  cast to the expected dtype. Raises PretrainedWeightsError listing every problem found.
  """
  expected_flat = _flatten(expected)
  filled: dict[str, np.ndarray] = {}
  filled_from: dict[str, str] = {}
  claimed: set[str] = set()   # Parameters some tensor maps to, placed or not: not reported missing.
  problems = []
  for name in sorted(tensors):
    targets = _match(rules, name)
    if not targets:
      if not any(re.fullmatch(pattern, name) for pattern in ignore):
        problems.append(f"unexpected tensor {name} {tuple(tensors[name].shape)}: no rule maps it to a "
                        f"parameter")
      continue
    if len(targets) > 1:
      problems.append(f"tensor {name} matches several rules: {[t for t, _ in targets]}")
      continue
    target, transform = targets[0]
    if target not in expected_flat:
      problems.append(f"tensor {name} maps to {target}, which the model does not have")
      continue
    if target in filled_from:
      problems.append(f"tensors {filled_from[target]} and {name} both map to {target}")
      continue
    claimed.add(target)
    value = np.asarray(tensors[name])
    want = expected_flat[target]
    if not np.issubdtype(value.dtype, np.floating):
      problems.append(f"tensor {name} has dtype {value.dtype}; expected floating point for {target}")
      continue
    placed = transform.fn(value)
    if tuple(placed.shape) != tuple(want.shape):
      via = "" if transform is IDENTITY else f" ({transform.name}: {tuple(placed.shape)})"
      problems.append(f"tensor {name} has shape {tuple(value.shape)}{via}; parameter {target} needs "
                      f"{tuple(want.shape)}")
      continue
    filled[target] = placed.astype(want.dtype)
    filled_from[target] = name
  for target in sorted(set(expected_flat) - claimed):
    names = [name for name in (source_name_for(rule, target) for rule in rules) if name]
    problems.append(f"missing tensor {names[0] if names else '(no rule names one)'} for parameter {target} "
                    f"{tuple(expected_flat[target].shape)}")
  if problems:
    raise PretrainedWeightsError(f"{source}: {len(problems)} problem{'s' if len(problems) > 1 else ''} "
                                 f"with the weights:\n  " + "\n  ".join(problems))
  return _unflatten(filled)


def source_name_for(rule: WeightRule, target: str) -> str | None:
  """The source tensor name `rule` would map to `target` (for messages), or None if it cannot.

  Handles the patterns of simple tables: literal names with escaped dots, capture groups `(...)` and
  optional non-capturing prefixes `(?:...)?` (left out).
  """
  pieces = re.split(r"\\(\d+)", rule.target)
  regex = "".join(re.escape(piece) if i % 2 == 0 else "([^/]+)" for i, piece in enumerate(pieces))
  match = re.fullmatch(regex, target)
  if match is None:
    return None
  values = {int(number): value for number, value in zip(pieces[1::2], match.groups())}
  pattern = re.sub(r"\(\?:[^()]*\)\?", "", rule.pattern)
  counter = iter(range(1, 100))

  def group_value(_: re.Match) -> str:
    return values.get(next(counter), "?")

  name = re.sub(r"\\(.)", r"\1", re.sub(r"\((?!\?)[^()]*\)", group_value, pattern))
  # The group values must be ones the pattern accepts (`self` for query|key|value does not).
  back = re.fullmatch(rule.pattern, name)
  return name if back is not None and back.expand(rule.target) == target else None


def expected_shapes(init_fn: Callable[[], Any]) -> dict[str, Any]:
  """The parameter tree (of ShapeDtypeStructs) an init function would return, computed without FLOPs."""
  return jax.eval_shape(init_fn)
