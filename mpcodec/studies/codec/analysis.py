"""Reading the compression rules after the Squeezer: `analyze` writes metrics/analysis.json, atlas.json, plots.

Held-out activations (a window of `num_tokens` tokens past every training and evaluation stream) go
through every SAE run and every Squeezer run; `rules.py` computes each run's OR-gates, validation,
co-activation, superposition tax and theme findings; `sections.py` combines the runs of one (SAE k,
Squeezer K) over seeds through the statistics layer (`mpcodec.core.stats`: t intervals, t tests, Holm,
no verdict for a smoke run or below 5 seeds), reports every analysis per Squeezer K beside its
faithfulness ratio, and says where the Squeezer is faithful (ratio <= `faithful_below`).

Nulls an untrained model cannot pass: every truth-table and co-activation finding of a trained Squeezer
run is also computed, exactly as for it, for `untrained_squeezers` random-init Squeezers of the same
shape and K (the untrained null) and for the Squeezer trained on SAE latents shuffled over tokens (the
shuffled-latent null, `pipeline.CodecConfig.shuffled_latent_squeezer`); a finding is supported only
above the strongest null of its seed. Themes exist only where the clustering scores above the same
clustering of shuffled inputs (`rules.themes_of_sae`).

The analyses are a pure function of the trained states, the source and this config: a finished analysis
(analysis.json written for the same inputs, atlas and plots present) is read back, not recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import jax
import numpy as np
from absl import logging

from mpcodec.core import configuration, io
from mpcodec.sae import autoencoder as sae
from mpcodec.studies.codec import atlas as atlas_lib
from mpcodec.studies.codec import plots, replication, rules, sections
from mpcodec.studies.codec.sources import GroundTruthSource
from mpcodec.studies.codec.window import held_out_window, sae_outputs, squeezer_outputs, take

# The analysis window's batches: beyond training (from 0), the init sample (1e8), evaluation (2e8) and
# the ground-truth recovery sample (3e8).
SECTIONS = ("or_gates", "validation", "coactivation", "superposition_tax", "themes", "dead_latents")
SECTION_VERDICTS = ("supported", "contradicted", "inconclusive", "cannot be tested")


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
  """Knobs of the compression-rule analyses.

  Attributes:
    enabled: run the analyses after the Squeezer (off: no analysis.json, atlas or analysis plots).
    num_tokens, batch_size: the held-out window (rounded up to whole batches) and its batches.
    min_count: a truth-table cell needs this many samples, else the pair is untestable.
    margin: "clearly above" in a truth table = more than margin × the neuron's standard deviation.
    max_pairs: at most this many roommate pairs per run (the rest are counted, not read).
    match_tolerance: frequency-matched pairs: firing rates within this relative tolerance.
    lift_pseudo_count: pseudo-count α of the smoothed lift.
    num_permutations: draws of the permutation null of shared themes.
    lift_permutations: draws of the co-activation permutation null (each shuffles the whole code matrix).
    theme_inputs: what is clustered into themes: "decoder" rows, "encoder" rows, "coactivation" graph.
    theme_method, theme_k_range, theme_criterion: the clustering, the numbers of themes tried, the criterion.
    theme_match_cosine: a latent inherits a planted theme from its Hungarian-matched true atom only when
      their decoder cosine is at least this.
    theme_recovered_ari: planted themes count as recovered when the ARI lies above this (t test over seeds).
    faithful_below: a Squeezer K is faithful when its mean faithfulness ratio is at most this.
    top_neurons: neurons drawn in the truth-table heatmaps; top_inputs: top-activating inputs per atom.
    null_seed: base seed of every null draw.
    untrained_squeezers: random-init Squeezers per trained Squeezer run, analysed as the trained one (the
      untrained null; their mean per seed is the null's value).
    replication_tolerance: not read by the codec's replication table any more (each claim is tested by
      equivalence within the margin declared in `replication.CLAIMS`); kept so that configs that set it
      still parse.
  """

  enabled: bool = True
  num_tokens: int = 32768
  batch_size: int = 2048
  # The rules' knobs keep the defaults written once in rules.RuleSettings.
  min_count: int = rules.RuleSettings.min_count
  margin: float = rules.RuleSettings.margin
  max_pairs: int = rules.RuleSettings.max_pairs
  match_tolerance: float = rules.RuleSettings.match_tolerance
  lift_pseudo_count: float = rules.RuleSettings.lift_pseudo_count
  num_permutations: int = rules.RuleSettings.num_permutations
  lift_permutations: int = rules.RuleSettings.lift_permutations
  theme_inputs: tuple[str, ...] = ("decoder", "encoder", "coactivation")
  theme_method: Literal["spectral", "kmeans", "hdbscan"] = "spectral"
  theme_k_range: tuple[int, int] = (2, 16)
  theme_criterion: Literal["silhouette", "eigengap"] = "silhouette"
  theme_match_cosine: float = 0.9
  theme_recovered_ari: float = 0.8
  faithful_below: float = 2.0
  top_neurons: int = 6
  top_inputs: int = 8
  null_seed: int = 0
  untrained_squeezers: int = 3
  replication_tolerance: float = 0.1

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    for key in ("num_tokens", "batch_size", "min_count", "max_pairs", "num_permutations", "lift_permutations",
                "top_neurons", "top_inputs"):
      yield key, getattr(self, key) >= 1, f"must be >= 1, got {getattr(self, key)}"
    yield "untrained_squeezers", self.untrained_squeezers >= 0, f"must be >= 0, got {self.untrained_squeezers}"
    yield "margin", self.margin >= 0, f"must be >= 0, got {self.margin}"
    yield "match_tolerance", self.match_tolerance > 0, f"must be > 0, got {self.match_tolerance}"
    yield "lift_pseudo_count", self.lift_pseudo_count > 0, f"must be > 0, got {self.lift_pseudo_count}"
    for i, kind in enumerate(self.theme_inputs):
      yield f"theme_inputs[{i}]", kind in ("decoder", "encoder", "coactivation"), (
          f"must be 'decoder', 'encoder' or 'coactivation', got {kind!r}")
    low, high = self.theme_k_range
    yield "theme_k_range", 2 <= low <= high, f"must be (low, high) with 2 <= low <= high, got {self.theme_k_range}"
    yield "theme_match_cosine", -1.0 <= self.theme_match_cosine <= 1.0, (
        f"must lie in [-1, 1], got {self.theme_match_cosine}")
    yield "faithful_below", self.faithful_below >= 1.0, f"must be >= 1, got {self.faithful_below}"
    yield "replication_tolerance", self.replication_tolerance >= 0, (
        f"must be >= 0, got {self.replication_tolerance}")

  def rule_settings(self) -> rules.RuleSettings:
    return rules.RuleSettings(min_count=self.min_count, margin=self.margin, max_pairs=self.max_pairs,
                              match_tolerance=self.match_tolerance, lift_pseudo_count=self.lift_pseudo_count,
                              num_permutations=self.num_permutations, lift_permutations=self.lift_permutations)


@dataclasses.dataclass
class SqueezerStage:
  """One trained Squeezer stage: `num_neurons` neurons, runs K-major over the SAE runs.

  states: stacked train states (runs first); sae_run[q]: the SAE run Squeezer run q squeezes;
  labels[q]: {"k", "seed_index", "squeezer_k"}; history: its training history (steps, runs).
  The main stage carries its nulls: untrained_states, random-init Squeezers stacked (inits, runs, ...),
  and shuffled, the stage trained on shuffled latents (same runs); None where not made.
  """

  name: str
  num_neurons: int
  cfg: sae.SAEConfig
  states: dict[str, Any]
  sae_run: np.ndarray
  labels: list[dict]
  history: dict[str, np.ndarray]
  untrained_states: dict[str, Any] | None = None
  shuffled: SqueezerStage | None = None


# ----------------------------------------------------------------------------- held-out arrays


# ----------------------------------------------------------------------------- the entry point


def analyze(workdir: str, result: Any) -> dict[str, Any] | None:
  """Runs every analysis of a `result.CodecResult`, writes metrics/analysis.json, atlas.json (+
  atlas_inputs.npz) and plots/.

  Returns the analysis payload (None when `analysis.enabled` is off). A finished analysis of the same
  inputs (`result.inputs_config`) and analysis config is read back from analysis.json instead. A smoke run's
  verdicts all read "cannot be tested".
  """
  cfg = result.cfg.analysis
  if not cfg.enabled:
    return None
  source, smoke, main = result.source, result.cfg.smoke, result.stages[0]
  nulls = {"untrained_squeezers": 0 if main.untrained_states is None else
           int(jax.tree.leaves(main.untrained_states)[0].shape[0]),
           "shuffled_latent_squeezer": main.shuffled is not None}
  fingerprint = {"inputs": dict(result.inputs_config), "analysis": configuration.to_dict(cfg), "nulls": nulls,
                 "smoke": bool(smoke)}
  path = os.path.join(workdir, "metrics", "analysis.json")
  saved = _finished(workdir, path, fingerprint)
  if saved is not None:
    return saved
  tic = time.perf_counter()
  computed = compute(cfg, source=source, sae_states=result.sae_states, sae_cfg=result.sae_cfg,
                     sae_labels=result.run_labels, stages=result.stages, sae_metrics=result.sae_metrics,
                     primary_squeezer_k=result.cfg.squeezer.k)
  payload = sections.build_payload(cfg, computed, skipped_widths=result.skipped_widths,
                                   dead_latents_payload=result.dead_latents, sae_metrics=result.sae_metrics,
                                   squeezer_metrics=result.squeezer_metrics,
                                   ultra_rare_below=result.cfg.dead_latents.ultra_rare_below, smoke=smoke)
  payload["source"] = source.description
  payload["fingerprint"] = fingerprint
  atlas = atlas_lib.build_atlas(computed["primary"], source, cfg, computed["window"])
  payload["atlas_shape"] = {k: atlas["json"].get(k, 0) for k in ("num_atoms", "num_live_atoms", "num_neurons")}
  payload["atlas_claim"] = replication.atlas_claim(payload["atlas_shape"])
  payload["replication"] = replication.replication_rows(payload)
  io.write_json(os.path.join(workdir, "atlas.json"), atlas["json"])
  atlas_lib.write_inputs(os.path.join(workdir, atlas_lib.INPUTS_FILE), atlas["inputs"])
  plots.write_plots(os.path.join(workdir, "plots"), payload, computed["primary"], cfg)
  io.write_json(path, payload)
  # Wall time is not part of analysis.json (a re-run must write the same file); it has its own.
  io.write_json(os.path.join(workdir, "metrics", "analysis_timing.json"),
                {"seconds": time.perf_counter() - tic, "num_tokens": int(computed["window"].x_BxD.shape[0])})
  # The payload as analysis.json holds it (keys sorted, NaN as null), so the report of this run and of a
  # re-run that reads the file back are the same text, line for line.
  return json.loads(json.dumps(io.jsonable(payload), sort_keys=True))


def _finished(workdir: str, path: str, fingerprint: Mapping) -> dict[str, Any] | None:
  """The saved analysis payload when it, the atlas and the plots are there for these inputs; else None."""
  if not os.path.exists(path) or not os.path.exists(os.path.join(workdir, "atlas.json")):
    return None
  if not all(os.path.exists(os.path.join(workdir, "plots", name)) for name in plots.PLOT_FILES):
    return None
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:   # truncated or damaged: the checkpoints give it back
    logging.warning("%s does not parse (%s: %s); recomputing it from the checkpoints", path, type(e).__name__, e)
    return None
  return saved if isinstance(saved, dict) and saved.get("fingerprint") == io.jsonable(fingerprint) else None


def compute(cfg: AnalysisConfig, *, source: Any, sae_states: dict, sae_cfg: sae.SAEConfig,
            sae_labels: list[dict], stages: list[SqueezerStage], sae_metrics: Mapping[str, np.ndarray],
            primary_squeezer_k: int) -> dict[str, Any]:
  """Every run's records: per SAE run (themes, dead latents) and per Squeezer run (the rules, the tax); a
  main-stage run's record holds its nulls' rules under "nulls" ("untrained": one per random init,
  "shuffled_latents")."""
  settings = cfg.rule_settings()
  window = held_out_window(source, cfg)
  x_BxD = window.x_BxD
  chunk = cfg.batch_size
  main = stages[0]
  widths = [stage.num_neurons for stage in stages]
  planted = _planted_themes(source)
  # The real neurons are the activations the SAE was trained on, where they are a model's layer.
  real_layer = not isinstance(source, GroundTruthSource)
  primary_k = _primary_k(main, primary_squeezer_k)
  sae_records, squeezer_records = [], []
  primary: dict[str, Any] = {}
  key = jax.random.PRNGKey(cfg.null_seed)
  sparse_by_run = [sae_outputs(take(sae_states, r), sae_cfg, x_BxD, chunk) for r in range(len(sae_labels))]
  live_by_run = [sparse.live_N for sparse in sparse_by_run]
  # One padded pair count for every run of the main stage and its nulls, so each jitted pass compiles once.
  padded_pairs = rules.padded_size(max([rules.roommate_count(encoder, live_by_run[int(main.sae_run[q])])
                                        for q, encoder in _main_encoders(main)], default=0), cfg.max_pairs)
  for r, label in enumerate(sae_labels):
    sae_state = take(sae_states, r)
    codes_BxN, x_hat_sae_BxD = sparse_by_run[r].dense(), sparse_by_run[r].x_hat_BxD
    live_N = live_by_run[r]
    w_dec_NxD = np.asarray(sae_state["params"]["w_dec_NxD"])
    w_enc_NxD = np.asarray(sae_state["params"]["w_enc_NxD"])
    latent_planted = {kind: rules.transfer_labels(w_dec_NxD, source.dictionary_NxD, labels, cfg.theme_match_cosine)
                      for kind, labels in planted.items()}
    theme_found = rules.themes_of_sae(w_dec_NxD, w_enc_NxD, codes_BxN, live_N, latent_planted, cfg.theme_inputs,
                                      cfg.theme_method, cfg.theme_k_range, cfg.theme_criterion, cfg.null_seed,
                                      shuffle_seed=(cfg.null_seed, r))
    fvu_baseline = rules.monosemantic_fvus(x_BxD, codes_BxN, w_dec_NxD, np.asarray(sae_state["params"]["b_dec_D"]),
                                           widths, sae_cfg.k_max)
    sae_records.append({**label, "num_live_atoms": int(live_N.sum()), "themes": theme_found,
                        "fvu_sae": rules.tax_of(x_BxD, x_hat_sae_BxD, x_hat_sae_BxD, 1.0)["fvu_squeezer"]})
    run = _RunInputs(x_BxD=x_BxD, codes_BxN=codes_BxN, live_N=live_N, sae_state=sae_state, sae_cfg=sae_cfg,
                     chunk=chunk, settings=settings, padded_pairs=padded_pairs, real_layer=real_layer,
                     theme_labels={f"found_{kind}": found["_labels"] for kind, found in theme_found.items()}
                     | {f"planted_{kind}": labels for kind, labels in latent_planted.items()},
                     num_permutations=cfg.num_permutations)
    for stage in stages:
      for q in np.flatnonzero(stage.sae_run == r):
        state = take(stage.states, int(q))
        neurons_BxM, x_hat_sq_BxD = squeezer_outputs(state, sae_state, sae_cfg, stage.cfg, x_BxD, chunk)
        record = {**stage.labels[q], "stage": stage.name, "num_neurons": stage.num_neurons,
                  "superposition_tax": rules.tax_of(x_BxD, x_hat_sq_BxD, x_hat_sae_BxD,
                                                    fvu_baseline[stage.num_neurons])}
        if stage is main:
          run_key = jax.random.fold_in(key, int(q))
          read = _rules_of(run_key, state, stage.cfg, run, neurons_BxM)
          record.update({name: read[name] for name in RULE_RECORDS})
          record["nulls"] = _null_rules(run_key, stage, int(q), run)
          if not primary and int(stage.labels[q]["squeezer_k"]) == primary_k:
            primary = {"label": record, "sae_state": sae_state, "codes_BxN": codes_BxN, "live_N": live_N,
                       "neurons_BxM": neurons_BxM, "w_enc_MxN": read["_w_enc_MxN"], "rooms": read["_rooms"],
                       "tables": read["_tables"], "lifts": read["_lifts"], "planted": latent_planted,
                       "theme_labels": {kind: found["_labels"] for kind, found in theme_found.items()},
                       "theme_input": cfg.theme_inputs[0] if cfg.theme_inputs else None}
        squeezer_records.append(record)
  for record in sae_records:
    for found in record["themes"].values():
      found.pop("_labels", None)
  return {"window": window, "sae_records": sae_records, "squeezer_records": squeezer_records,
          "primary": primary, "primary_k": primary_k, "main_stage": main.name, "widths": widths,
          "planted_kinds": sorted(planted), "real_layer": real_layer}


# What a main-stage run's record holds of `_rules_of`, and so each of its nulls' records.
RULE_RECORDS = ("or_gates", "validation", "coactivation", "share_theme")


@dataclasses.dataclass
class _RunInputs:
  """What every Squeezer of one SAE run is read against: the window, its codes, the rules' settings."""

  x_BxD: np.ndarray
  codes_BxN: np.ndarray
  live_N: np.ndarray
  sae_state: dict
  sae_cfg: sae.SAEConfig
  chunk: int
  settings: rules.RuleSettings
  padded_pairs: int
  real_layer: bool
  theme_labels: dict[str, np.ndarray]
  num_permutations: int


def _main_encoders(main: SqueezerStage) -> Iterator[tuple[int, np.ndarray]]:
  """(run, encoder) of every main-stage Squeezer and of each of its nulls."""
  models = [main.states] + ([main.shuffled.states] if main.shuffled is not None else [])
  if main.untrained_states is not None:
    models += [take(main.untrained_states, i) for i in range(_num_inits(main))]
  for states in models:
    for q in range(len(main.labels)):
      yield q, np.asarray(states["params"]["w_enc_NxD"][q])


def _num_inits(stage: SqueezerStage) -> int:
  return 0 if stage.untrained_states is None else int(jax.tree.leaves(stage.untrained_states)[0].shape[0])


def _rules_of(run_key: jax.Array, state: dict, squeezer_cfg: sae.SAEConfig, run: _RunInputs,
              neurons_BxM: np.ndarray | None = None) -> dict[str, Any]:
  """OR gates, validation, co-activation and shared themes of one Squeezer on the window (the records
  RULE_RECORDS), with its encoder, roommates, truth tables and lifts under "_" keys."""
  if neurons_BxM is None:
    neurons_BxM, _ = squeezer_outputs(state, run.sae_state, run.sae_cfg, squeezer_cfg, run.x_BxD, run.chunk)
  w_enc_MxN = np.asarray(state["params"]["w_enc_NxD"])
  num_neurons = int(w_enc_MxN.shape[0])
  rooms = rules.roommates(w_enc_MxN, run.live_N, run.settings, run.padded_pairs)
  gates = rules.or_gates(jax.random.fold_in(run_key, 0), neurons_BxM, run.codes_BxN, rooms, run.settings)
  validation = (rules.validation(run.x_BxD, run.codes_BxN, rooms, gates, run.settings) if run.real_layer
                else {"reason": _NO_REAL_LAYER})
  tables = gates.pop("_tables", None)
  gates.pop("_permuted", None)
  coact = rules.coactivation_of(jax.random.fold_in(run_key, 1), run.codes_BxN, rooms, run.settings)
  lifts = {name: coact.pop(name, None) for name in ("_log_lift_roommates", "_log_lift_matched")}
  share = {name: rules.share_theme(jax.random.fold_in(run_key, 3 if name.startswith("found_") else 4),
                                   rooms["assignment_N"], labels, num_neurons, run.num_permutations)
           for name, labels in run.theme_labels.items()}
  return {"or_gates": gates, "validation": validation, "coactivation": coact, "share_theme": share,
          "_w_enc_MxN": w_enc_MxN, "_rooms": rooms, "_tables": tables, "_lifts": lifts}


def _null_rules(run_key: jax.Array, main: SqueezerStage, q: int, run: _RunInputs) -> dict[str, Any]:
  """The rules of main-stage run q's nulls, each read exactly as the trained Squeezer: "untrained" (one
  record per random init) and "shuffled_latents" (absent where not trained)."""
  out: dict[str, Any] = {}
  lean = lambda found: {name: found[name] for name in RULE_RECORDS}
  if main.untrained_states is not None:
    out["untrained"] = [lean(_rules_of(jax.random.fold_in(run_key, 100 + i), take(take(main.untrained_states, i), q),
                                       main.cfg, run)) for i in range(_num_inits(main))]
  if main.shuffled is not None:
    out["shuffled_latents"] = lean(_rules_of(jax.random.fold_in(run_key, 200), take(main.shuffled.states, q),
                                             main.shuffled.cfg, run))
  return out


_NO_REAL_LAYER = ("cannot be tested on this source: it has no real neuron layer (ground-truth activations "
                  "are sums of known atoms; the real neurons exist for a model checkpoint's layer, e.g. "
                  ":source=mono_poly)")


def _primary_k(main: SqueezerStage, wanted: int) -> int:
  ks = sorted({int(label["squeezer_k"]) for label in main.labels})
  return wanted if wanted in ks else ks[-1]


def _planted_themes(source: Any) -> dict[str, np.ndarray]:
  """The true atoms' planted themes by kind (ground truth only)."""
  out = {}
  for kind in ("cofiring", "geometric"):
    labels = getattr(source, f"{kind}_theme_N", None)
    if labels is not None and np.any(np.asarray(labels) >= 0):
      out[kind] = np.asarray(labels)
  return out
