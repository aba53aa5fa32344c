"""Mechanistic measures at the planned checkpoints, and their change across jumps against controls.

At every planned step the re-run's parameters are restored (seed axis first), the model is run on the
run's own held-out probe (the sweep's `ProbeSets`), and the measures of `mpcodec.metrics.mechanisms` are
computed, vmapped over seeds:
- every family: activation sparsity of each measured layer (exact zeros after ReLU; Hoyer sparsity for
  the Transformers' residual streams, which are never exactly zero); MLPs and CNNs: the mean class
  selectivity index of each layer's units (conv stages averaged over positions first; the index needs
  non-negative units, so the Transformers' signed residual streams have none);
- CNNs: mean |cosine| between the filters of each convolution kernel (lower = more orthogonal);
- Transformers: attention entropy of each layer (mean over heads) and head specialisation (SD of the
  heads' entropies).
Per window the change is value(after) - value(before) of the mean over layers. Per seed, the effect of a
measure is the mean change across its jump windows minus the mean change across their matched control
windows; a t interval and test over seeds (`mpcodec.core.stats.test_hypothesis`) give a verdict for the
expected sign, "cannot be tested" below `stats.MIN_SEEDS` seeds or for a smoke run. The three questions
of the earlier study (QUESTIONS, each read from its family's pooled effect) are one declared family:
their verdicts are re-decided with Holm over the tested ones.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import stats
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.metrics import mechanisms
from mpcodec.models import zoo
from mpcodec.studies.dynamics import program as dynamics
from mpcodec.studies.dynamics import series as results
from mpcodec.studies.dynamics.analyze.checkpoint_plan import planned_config, rerun_workdir

MECHANISM_COLUMNS = ("scope", "run", "family", "mechanism", "num_windows", "jump_change", "control_change",
                     "effect", "ci_low", "ci_high", "num_seeds", "p_value", "p_adjusted", "verdict", "reason")
VALUE_COLUMNS = ("run", "family", "seed", "pair", "kind", "mechanism", "measure", "layer", "jump_step",
                 "before_step", "after_step", "before", "after", "change")
# The three questions of the earlier study: (family, mechanism, expected sign of the effect, question).
QUESTIONS = (
    ("transformer", "attention_entropy", -1, "Does attention entropy fall during transformer jumps?"),
    ("cnn", "filter_cosine_similarity", -1, "Do CNN filters become more orthogonal during jumps?"),
    ("mlp", "class_selectivity", +1, "Do MLP units gain class selectivity during jumps?"),
)


def _layer_measures(params, x, labels, key_mask, model, layers: Sequence[str], layouts: Sequence[str],
                    num_classes: int) -> dict[str, jax.Array]:
  """One seed's measures: {mechanism: (layers,)} for the mechanisms its architecture has."""
  _, acts = model.apply(params, x)
  out: dict[str, list] = {"activation_sparsity": [], "class_selectivity": []}
  for name, layout in zip(layers, layouts):
    value = acts[name]
    if layout == "tokens":
      out["activation_sparsity"].append(mechanisms.hoyer_sparsity(value, key_mask))
      continue   # signed residual streams: the selectivity index is defined for non-negative units only
    out["activation_sparsity"].append(mechanisms.activation_sparsity(value))
    pooled = value.reshape(value.shape[0], -1, value.shape[-1]).mean(axis=1) if value.ndim > 2 else value
    out["class_selectivity"].append(jnp.mean(mechanisms.class_selectivity(pooled, labels, num_classes)))
  if not out["class_selectivity"]:
    del out["class_selectivity"]
  entropies = [mechanisms.attention_entropy(acts[k], key_mask) for k in zoo.depth_sorted(acts)
               if zoo.is_attention_layer(k)]
  if entropies:
    out["attention_entropy"] = [jnp.mean(e) for e in entropies]
    out["head_specialisation"] = [mechanisms.head_specialisation(e) for e in entropies]
  kernels = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
             if jax.tree_util.keystr(path).endswith("['kernel']") and leaf.ndim == 4]
  if kernels:
    out["filter_cosine_similarity"] = [mechanisms.filter_cosine_similarity(k) for k in kernels]
  return {k: jnp.stack(v) for k, v in out.items()}


def checkpoint_measures(workdir: str, run: str, record: Mapping[str, Any], steps: Sequence[int],
                        data_dir: str | None, dataset=None) -> dict[int, dict[str, np.ndarray]]:
  """{step: {mechanism: (seeds, layers)}} at each planned step of the run's re-run checkpoints."""
  cfg = planned_config(record, [])
  dataset = dataset if dataset is not None else dynamics.load_dataset(cfg, data_dir)
  model = dynamics.build_model(cfg, dataset)
  probe = dynamics.make_probe_sets(cfg, dataset, model)
  x, labels = jnp.asarray(probe.arrays["probe_x"]), jnp.asarray(probe.arrays["probe_y"])
  if dataset.kind == "text":
    key_mask = x != 0
  else:
    key_mask = None
  fn = jax.jit(jax.vmap(functools.partial(
      _single_seed, model=model, layers=probe.layer_names, layouts=probe.layer_layouts,
      num_classes=dataset.num_classes), in_axes=(0, None, None, None)))
  store = CheckpointStore(os.path.join(results.checkpoint_dir(rerun_workdir(workdir), run), "train"))
  try:
    values = {}
    for step in steps:
      params_S = store.restore_as_saved(int(step))["state"]["params"]
      values[int(step)] = {k: np.asarray(v) for k, v in fn(params_S, x, labels, key_mask).items()}
    return values
  finally:
    store.close()


def _single_seed(params, x, labels, key_mask, *, model, layers, layouts, num_classes):
  if key_mask is None:  # Image inputs: every patch (token) is real.
    _, acts = model.apply(params, x[:1])
    token_counts = [v.shape[-1] for k, v in acts.items() if zoo.is_attention_layer(k)]   # (N, heads, T, T)
    key_mask = jnp.ones((x.shape[0], token_counts[0] if token_counts else 1), bool)
  return _layer_measures(params, x, labels, key_mask, model, layers, layouts, num_classes)


def window_values(run: str, family: str, windows: Sequence[Mapping[str, Any]], seeds: Sequence[int],
                  values: Mapping[int, Mapping[str, np.ndarray]]) -> list[dict]:
  """Rows of mechanism_values.csv: each window's before / after / change of each mechanism (layer mean)."""
  rows = []
  position = {int(s): i for i, s in enumerate(seeds)}
  for window in windows:
    s = position[window["seed"]]
    before, after = values[window["before_step"]], values[window["after_step"]]
    for mechanism in sorted(before):
      b, a = float(np.mean(before[mechanism][s])), float(np.mean(after[mechanism][s]))
      rows.append({"run": run, "family": family, "seed": window["seed"], "pair": window["pair"],
                   "kind": window["kind"], "mechanism": mechanism, "measure": window["measure"],
                   "layer": window["layer"], "jump_step": window["jump_step"],
                   "before_step": window["before_step"], "after_step": window["after_step"],
                   "before": b, "after": a, "change": a - b})
  return rows


def effect_row(scope: str, run: str | None, family: str | None, mechanism: str, rows: Sequence[Mapping],
               expected_sign: int, smoke: bool = False) -> dict:
  """Per seed: mean change across jump windows minus across control windows; t interval over seeds and
  the verdict of `stats.test_hypothesis` (unadjusted; p_adjusted is set by a family)."""
  seeds = sorted({r["seed"] for r in rows})
  differences, jump_changes, control_changes = [], [], []
  for seed in seeds:
    jump = [r["change"] for r in rows if r["seed"] == seed and r["kind"] == "jump"]
    control = [r["change"] for r in rows if r["seed"] == seed and r["kind"] == "control"]
    if jump and control:
      differences.append(np.mean(jump) - np.mean(control))
      jump_changes.append(np.mean(jump))
      control_changes.append(np.mean(control))
  row = {"scope": scope, "run": run, "family": family, "mechanism": mechanism,
         "num_windows": sum(r["kind"] == "jump" for r in rows),
         "jump_change": float(np.mean(jump_changes)) if jump_changes else None,
         "control_change": float(np.mean(control_changes)) if control_changes else None,
         "effect": float(np.mean(differences)) if differences else None, "ci_low": None, "ci_high": None,
         "num_seeds": len(differences), "p_value": None, "p_adjusted": None, "verdict": "cannot be tested",
         "reason": None}
  if not differences:
    row["reason"] = "no seed with both jump and control windows"
    return row
  tested = stats.test_hypothesis(np.asarray(differences), expected_sign, name=mechanism, smoke=smoke)
  finite = lambda x: float(x) if np.isfinite(x) else None
  reason = tested.reason
  if tested.verdict == "cannot be tested" and not smoke:
    reason = f"{len(differences)} seed(s) with jump and control windows, at least {stats.MIN_SEEDS} needed"
  row.update(ci_low=finite(tested.low), ci_high=finite(tested.high), p_value=finite(tested.p_value),
             verdict=tested.verdict, reason=reason)
  return row


def _expected_sign(mechanism: str) -> int:
  for _, name, sign, _ in QUESTIONS:
    if name == mechanism:
      return sign
  return +1


def mechanism_effects(value_rows: Sequence[Mapping], smoke: bool = False) -> list[dict]:
  """Effect rows of mechanisms.csv: per run and mechanism, then pooled per family; the rows that answer
  QUESTIONS are one family (Holm over the tested ones)."""
  effects = []
  runs = sorted({(r["run"], r["family"]) for r in value_rows})
  for run, family in runs:
    for mechanism in sorted({r["mechanism"] for r in value_rows if r["run"] == run}):
      rows = [r for r in value_rows if r["run"] == run and r["mechanism"] == mechanism]
      effects.append(effect_row("run", run, family, mechanism, rows, _expected_sign(mechanism), smoke))
  for family in sorted({f for _, f in runs}):
    for mechanism in sorted({r["mechanism"] for r in value_rows if r["family"] == family}):
      # Pooled per seed over the family's runs: seed i's windows of every run count for seed i.
      rows = [r for r in value_rows if r["family"] == family and r["mechanism"] == mechanism]
      effects.append(effect_row("family", None, family, mechanism, rows, _expected_sign(mechanism), smoke))
  questions = {(f, m) for f, m, _, _ in QUESTIONS}
  family_rows = [e for e in effects if e["scope"] == "family" and (e["family"], e["mechanism"]) in questions
                 and e["verdict"] != "cannot be tested"]
  if family_rows:
    adjusted = stats.holm([e["p_value"] for e in family_rows])
    for row, p_adjusted in zip(family_rows, adjusted):
      row["p_adjusted"] = float(p_adjusted)
      row["verdict"] = str(stats.hypothesis_verdicts(p_adjusted, row["effect"], _expected_sign(row["mechanism"])))
      row["reason"] = f"{row['reason']}; Holm over the {len(family_rows)} tested questions: {p_adjusted:.3g}"
  return effects


def answers(effects: Sequence[Mapping], families_in_sweep: set[str],
            reason_if_missing: str | None) -> list[dict]:
  """The three questions, each answered from its family's pooled effect (a computed verdict)."""
  out = []
  wording = {"supported": "yes", "contradicted": "no: the opposite", "inconclusive": "not resolved"}
  for family, mechanism, sign, question in QUESTIONS:
    row = next((e for e in effects if e["scope"] == "family" and e["family"] == family
                and e["mechanism"] == mechanism), None)
    answer = {"question": question, "family": family, "mechanism": mechanism, "expected_sign": sign}
    if family not in families_in_sweep:
      out.append({**answer, "verdict": "cannot be tested", "reason": f"no {family} run in the sweep"})
    elif row is None:
      out.append({**answer, "verdict": "cannot be tested",
                  "reason": reason_if_missing or f"no planned jump window in any {family} run"})
    else:
      out.append({**answer, **{k: row[k] for k in ("effect", "ci_low", "ci_high", "num_seeds", "p_value",
                                                   "p_adjusted", "reason")},
                  "verdict": row["verdict"], "answer": wording.get(row["verdict"], row["verdict"])})
  return out
