"""atlas.json: every live atom of the primary run with its neuron, theme, firing and roommates; every neuron
with its atoms. The inputs behind each atom's top activations (images, where the source has them) are in
atlas_inputs.npz, referenced from the JSON; a file source (array) names each top input's row of the file and its
token metadata (`top_input_rows`). Schema: see the codec README ("Atlas").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mpcodec.core import io
from mpcodec.metrics import truth_tables as tt

INPUTS_FILE = "atlas_inputs.npz"


def _class_name(index: int) -> str:
  return tt.CLASS_NAMES[int(index)]


def build_atlas(primary: Mapping[str, Any], source: Any, cfg: Any, window: Any) -> dict[str, Any]:
  """{"json": the atlas payload, "inputs": {npz key: array}} of the primary Squeezer run."""
  if not primary:
    return {"json": {"reason": "no Squeezer run at the primary K", "atoms": [], "neurons": []}, "inputs": {}}
  label = primary["label"]
  codes_BxN = primary["codes_BxN"]
  live_N = np.asarray(primary["live_N"])
  rooms = primary["rooms"]
  assignment_N = np.asarray(rooms["assignment_N"])
  num_neurons = int(rooms["num_neurons"])
  w_enc_MxN = np.asarray(primary["w_enc_MxN"])
  positive_MxN = np.maximum(w_enc_MxN, 0.0)
  totals_N = positive_MxN.sum(0)
  share_N = np.where(totals_N > 0, positive_MxN[np.maximum(assignment_N, 0), np.arange(assignment_N.size)]
                     / np.where(totals_N > 0, totals_N, 1.0), 0.0)
  num_tokens = codes_BxN.shape[0]
  frequency_N = (codes_BxN > 0).sum(0) / max(num_tokens, 1)
  theme_input = primary.get("theme_input")
  found_theme_N = (np.asarray(primary["theme_labels"][theme_input]) if theme_input else
                   np.full(assignment_N.size, -1))
  planted = {kind: np.asarray(labels) for kind, labels in primary["planted"].items()}

  # Roommate pairs with their truth-table classes (testable pairs only get a class name).
  partners: dict[int, list[dict]] = {}
  class_counts = np.zeros((num_neurons, len(tt.CLASS_NAMES)), np.int64)
  tables = primary.get("tables")
  if tables is not None and rooms["num_pairs"]:
    pairs = np.asarray(rooms["pairs_Px2"])
    valid = np.asarray(rooms["valid_P"])
    neuron = np.asarray(rooms["neuron_P"])
    classes = np.asarray(tables.class_P)
    interaction = np.asarray(tables.interaction_P)
    for p in np.flatnonzero(valid):
      a, b, c = int(pairs[p, 0]), int(pairs[p, 1]), _class_name(classes[p])
      class_counts[neuron[p], classes[p]] += 1
      for x, y in ((a, b), (b, a)):
        partners.setdefault(x, []).append({"atom": y, "class": c, "interaction": float(interaction[p])})

  has_images = hasattr(source, "batch_examples")
  batches = _Batches(source, window)
  inputs: dict[str, np.ndarray] = {}
  atoms = []
  top = min(cfg.top_inputs, num_tokens)
  # The `top` highest codes of every atom at once (a partition of each column, then a sort of the few).
  candidates_TxN = np.argpartition(-codes_BxN, top - 1, axis=0)[:top] if top < num_tokens else (
      np.broadcast_to(np.arange(num_tokens)[:, None], codes_BxN.shape))
  for i in np.flatnonzero(live_N):
    column = candidates_TxN[:, i]
    order = column[np.lexsort((column, -codes_BxN[column, i]))]
    order = order[codes_BxN[order, i] > 0]
    entry: dict[str, Any] = {
        "atom": int(i), "neuron": int(assignment_N[i]), "share": float(share_N[i]),
        "theme": int(found_theme_N[i]), "planted_themes": {k: int(v[i]) for k, v in planted.items()},
        "firing_frequency": float(frequency_N[i]),
        "top_inputs": [{"token": int(t), "code": float(codes_BxN[t, i])} for t in order],
        "roommates": partners.get(int(i), []),
    }
    if has_images and order.size:
      key = f"atom_{int(i)}"
      inputs[key] = np.stack([batches.row(int(t)) for t in order])
      entry["top_input_images"] = {"file": INPUTS_FILE, "key": key, "shape": list(inputs[key].shape)}
    elif hasattr(source, "sample") and order.size:
      entry["top_input_true_atoms"] = [np.flatnonzero(batches.row(int(t)) > 0).tolist() for t in order]
    elif hasattr(source, "row_metadata") and order.size:
      entry["top_input_rows"] = source.row_metadata([batches.source_row(int(t)) for t in order])
    atoms.append(entry)

  neurons = []
  for m in range(num_neurons):
    members = np.flatnonzero(assignment_N == m)
    themes_here = found_theme_N[members]
    neurons.append({
        "neuron": m, "atoms": [int(a) for a in members],
        "themes": {str(int(t)): int(c) for t, c in zip(*np.unique(themes_here, return_counts=True))},
        "class_counts": {name: int(c) for name, c in zip(tt.CLASS_NAMES, class_counts[m])},
    })
  payload = {
      "run": {k: label[k] for k in ("k", "seed_index", "squeezer_k", "num_neurons")},
      "num_live_atoms": int(live_N.sum()), "num_atoms": int(live_N.size), "num_neurons": num_neurons,
      "num_tokens": int(num_tokens), "theme_input": theme_input,
      "token_definition": "index into the analysis window (batch = token // batch_size from the window's first "
                          "batch, row = token % batch_size)",
      "atoms": atoms, "neurons": neurons,
  }
  return {"json": payload, "inputs": inputs}


class _Batches:
  """The window's batches re-drawn from the source on demand, once each (model inputs or true codes)."""

  def __init__(self, source: Any, window: Any):
    self.source, self.window, self.cache = source, window, {}

  def _batch(self, step: int) -> np.ndarray:
    if step not in self.cache:
      if hasattr(self.source, "batch_examples"):
        self.cache[step] = np.asarray(self.source.batch_examples(self.window.batch_size, step)[1], np.float32)
      else:
        self.cache[step] = np.asarray(self.source.sample(step, self.window.batch_size)[1])
    return self.cache[step]

  def source_row(self, token: int) -> int:
    """The row of the source's file behind window token `token` (sources that read rows of a file)."""
    step = int(self.window.step_B[token])
    if ("rows", step) not in self.cache:
      self.cache[("rows", step)] = self.source.indices(step, self.window.batch_size)
    return int(self.cache[("rows", step)][int(self.window.row_B[token])])

  def row(self, token: int) -> np.ndarray:
    return self._batch(int(self.window.step_B[token]))[int(self.window.row_B[token])]


def write_inputs(path: str, inputs: Mapping[str, np.ndarray]) -> None:
  """The atlas's input arrays as one compressed npz, written atomically."""
  with io.atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez_compressed(f, **{k: np.asarray(v) for k, v in inputs.items()})
