"""Thematic steering of MiniLM: a theme's vector, one of its atoms, DiffMean and random directions, added
at the SAE's layer.

For each SAE seed the target theme is the theme whose activation (max over tokens) best separates the
target class from the others on the training documents (Cohen's d); its single-atom baseline is the
theme member with the largest d; DiffMean is the difference of the class means of the documents' mean
activations; the control is `random_directions` directions drawn uniformly on the sphere for that seed
(`random_control`). Every vector is norm-matched (δ_t = α‖x_t‖v̂) and added at every real token, so a
random direction moves each activation exactly as far as the theme vector does: what the theme adds
beyond it is its direction. The claims and hypotheses are read at `reference_strength`, declared in the
config before the run; the sweep over `strengths` is a descriptive curve and chooses nothing.

Measured on held-out documents of the other classes (the steering set) and on Shakespeare lines (the
neutral set), under the linear probe on the final sentence embedding:
  - target probability p(target) clean and steered, their ratio and difference;
  - the KL divergence KL(p_clean ‖ p_steered) of the probe's distribution and the cosine drift 1 − cos
    of the embedding, on the neutral set and on the steering set;
  - the SNR of the embedding change along the probe's target-margin direction (metrics.steering.
    population_snr), and its scaling with the number N of atoms summed (the N most target-selective
    atoms): the exponent β of SNR ∝ N^β (√N: β = 0.5), one per SAE seed.
The random control's figures are the mean over its directions, per SAE seed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import probe as probe_lib
from mpcodec.core import seeds, stats
from mpcodec.metrics import steering
from mpcodec.studies.codec import minilm_passes

METHODS = ("theme", "atom", "diffmean", "random")


@dataclasses.dataclass(frozen=True)
class SteeringConfig:
  """Strengths α (fractions of the local activation norm), the sets' sizes, the control, the SNR sweep.

  strengths: the descriptive sweep (plots/steering.png, the table by α); no figure is chosen from it.
  reference_strength: the α at which every claim and hypothesis is read, declared here before the run
    (1: a delta as large as the activation itself); it must be one of `strengths`.
  random_directions: random unit directions per SAE seed, steered at the same norm as the theme vector
    (the control the theme must beat).
  snr_atoms: numbers N of the most target-selective atoms summed for the SNR law, steered at
    `snr_strength` (also fixed in advance).
  Generative steering of a causal LM (the `generation` stage): `target_tokens` target tokens per topic;
  `generation_prompts` neutral prompts cut to `prompt_tokens` tokens, each continued greedily for
  `generation_tokens` new tokens per method and strength.
  """

  strengths: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0)
  reference_strength: float = 1.0
  random_directions: int = 4
  steering_items: int = 256
  neutral_items: int = 256
  snr_atoms: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
  snr_strength: float = 1.0
  batch_size: int = 32
  target_tokens: int = 20
  generation_prompts: int = 3
  prompt_tokens: int = 12
  generation_tokens: int = 16

  def checks(self):
    yield "strengths", len(self.strengths) >= 1 and all(s > 0 for s in self.strengths), (
        f"must be a non-empty tuple of positive strengths, got {self.strengths}")
    yield "reference_strength", self.reference_strength in self.strengths, (
        f"{self.reference_strength} must be one of strengths {self.strengths}")
    yield "random_directions", self.random_directions >= 1, f"must be >= 1, got {self.random_directions}"
    yield "steering_items", self.steering_items >= 1, f"must be >= 1, got {self.steering_items}"
    yield "neutral_items", self.neutral_items >= 1, f"must be >= 1, got {self.neutral_items}"
    yield "snr_atoms", len(self.snr_atoms) >= 2 and all(n >= 1 for n in self.snr_atoms), (
        f"must hold at least two atom counts >= 1, got {self.snr_atoms}")
    yield "snr_strength", self.snr_strength > 0, f"must be > 0, got {self.snr_strength}"
    for key in ("batch_size", "target_tokens", "generation_prompts", "prompt_tokens", "generation_tokens"):
      yield key, getattr(self, key) >= 1, f"must be >= 1, got {getattr(self, key)}"


def selectivity(scores_DxK: np.ndarray, is_target_D: np.ndarray) -> np.ndarray:
  """Cohen's d of each column between target and other documents (`stats.standardized_mean_difference`,
  in float64); 0 where the pooled sd is 0 (a column that cannot tell the documents apart)."""
  scores_DxK = np.asarray(scores_DxK, np.float64)
  d_K = np.asarray([stats.standardized_mean_difference(column[is_target_D], column[~is_target_D])
                    for column in scores_DxK.T], np.float64)
  return np.nan_to_num(d_K, nan=0.0)


def choose_vectors(decoder_NxD: np.ndarray, theme_labels_N: np.ndarray, theme_max_DxT: np.ndarray,
                   atom_max_DxN: np.ndarray, is_target_D: np.ndarray, train_D: np.ndarray,
                   snr_atoms: tuple[int, ...]) -> dict[str, Any]:
  """The target theme, its best atom and the SNR atom sets of one SAE run, chosen on training documents."""
  theme_d = selectivity(theme_max_DxT[train_D], is_target_D[train_D])
  theme = int(np.argmax(theme_d))
  members = np.flatnonzero(theme_labels_N == theme)
  atom_d = selectivity(atom_max_DxN[train_D], is_target_D[train_D])
  atom = int(members[np.argmax(atom_d[members])])
  ranked = np.argsort(-atom_d, kind="stable")
  counts = [n for n in snr_atoms if n <= ranked.size]
  return {
      "theme": theme, "theme_size": int(members.size), "theme_selectivity": float(theme_d[theme]),
      "atom": atom, "atom_selectivity": float(atom_d[atom]),
      "theme_vector": np.asarray(steering.theme_vector(decoder_NxD, theme_labels_N == theme)),
      "atom_vector": np.asarray(decoder_NxD[atom]),
      "snr_counts": counts,
      "snr_vectors": np.stack([decoder_NxD[ranked[:n]].sum(0) for n in counts]),
  }


def random_control(base_seed: int, seed_index: int, num_directions: int, width: int) -> np.ndarray:
  """(num_directions, width) unit directions uniform on the sphere (normalised standard normals), drawn
  from the key of (base seed, SAE seed index, "steering_random"): one control per SAE seed, the same
  whatever the number of seeds."""
  normal = jax.random.normal(seeds.seed_key(base_seed, seed_index, "steering_random"), (num_directions, width))
  return np.asarray(steering.unit_direction(normal))


@jax.jit
def _effects_of_one(probe: probe_lib.Probe, target: jax.Array, clean_NxE: jax.Array, steered_NxE: jax.Array
                    ) -> dict[str, jax.Array]:
  clean_logits, steered_logits = probe_lib.logits(probe, clean_NxE), probe_lib.logits(probe, steered_NxE)
  margin_E = probe_lib.margin_direction(probe, target)
  return {"p_target_clean": steering.mean_class_probability(clean_logits, target),
          "p_target_steered": steering.mean_class_probability(steered_logits, target),
          "kl": jnp.mean(steering.kl_divergence(clean_logits, steered_logits)),
          "drift": jnp.mean(steering.cosine_drift(clean_NxE, steered_NxE)),
          "snr": steering.population_snr(steered_NxE - clean_NxE, margin_E)}


def _effects(probe: probe_lib.Probe, target: int, clean_NxE: np.ndarray, steered_AxNxE: np.ndarray
             ) -> dict[str, np.ndarray]:
  """Per strength: mean target probability clean / steered, mean KL, mean drift, SNR (arrays over A)."""
  out = [_effects_of_one(probe, target, clean_NxE, steered) for steered in steered_AxNxE]
  return {name: np.asarray([o[name] for o in out], np.float64) for name in out[0]}


def run_steering(model: Any, layer: str, max_length: int, cfg: SteeringConfig, probe: probe_lib.Probe,
                 target: int, steering_texts: list[str], neutral_texts: list[str],
                 choices: list[dict[str, Any]], diffmean_D: np.ndarray) -> dict[str, Any]:
  """Every steering measurement for each SAE seed's choices (see the module docstring); plain arrays.

  Each choice carries its seed's `random_vectors` (`random_control`); the random method's figures are
  their mean over the directions."""
  strengths = list(cfg.strengths)
  sets = {"steering": minilm_passes.token_batches(model, steering_texts, max_length, cfg.batch_size),
          "neutral": minilm_passes.token_batches(model, neutral_texts, max_length, cfg.batch_size)}
  sizes = {"steering": len(steering_texts), "neutral": len(neutral_texts)}
  results: dict[str, Any] = {name: {method: [] for method in METHODS} for name in sets}
  snr_rows = []
  for seed_index, choice in enumerate(choices):
    # DiffMean does not depend on the SAE seed: measured with the first seed only.
    methods = ["theme", "atom"] + (["diffmean"] if seed_index == 0 else [])
    randoms = np.asarray(choice["random_vectors"])
    vectors = np.concatenate([np.stack([choice["theme_vector"], choice["atom_vector"], diffmean_D][:len(methods)]),
                              randoms])
    for name, batches in sets.items():
      clean, steered = minilm_passes.steered_embeddings(model, layer, batches, vectors, strengths,
                                                        sizes[name])
      for m, method in enumerate(methods):
        results[name][method].append(_effects(probe, target, clean, steered[m]))
      controls = [_effects(probe, target, clean, steered[len(methods) + j]) for j in range(len(randoms))]
      results[name]["random"].append({key: np.mean([c[key] for c in controls], axis=0) for key in controls[0]})
    if len(choice["snr_counts"]) >= 2:
      clean, steered = minilm_passes.steered_embeddings(model, layer, sets["steering"], choice["snr_vectors"],
                                                        [cfg.snr_strength], sizes["steering"])
      snr = np.asarray([_effects(probe, target, clean, steered[i])["snr"][0]
                        for i in range(len(choice["snr_counts"]))])
      counts = np.asarray(choice["snr_counts"], np.float64)
      slope = float(steering.log_log_slope(counts, snr)) if np.all(snr > 0) else float("nan")
      snr_rows.append({"seed_index": seed_index, "atoms": choice["snr_counts"], "snr": snr, "exponent": slope,
                       "reason": None if np.all(snr > 0) else "a non-positive SNR has no logarithm"})
    else:
      snr_rows.append({"seed_index": seed_index, "atoms": choice["snr_counts"], "snr": [],
                       "exponent": float("nan"),
                       "reason": "fewer than two atom counts fit in the dictionary"})
  stacked = {name: {method: {key: np.stack([row[key] for row in rows]) for key in rows[0]}
                    for method, rows in by_method.items()} for name, by_method in results.items()}
  return {"strengths": strengths, "sets": stacked, "snr": snr_rows, "snr_strength": cfg.snr_strength,
          "random_directions": cfg.random_directions}
