"""Concept Response Selectivity (CRS) of hidden neurons and the mono / poly / dead labels built on it.

A neuron's response to a concept is its mean activation over the samples that show the concept. CRS
compares the strongest response with the runner-up: a neuron that answers one concept only has CRS 1,
a neuron that answers every concept alike has CRS 0. All functions are pure, jittable and work under
`jax.vmap` over a leading seed axis (concept counts are static Python ints).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mpcodec.core.errors import DataError
from mpcodec.metrics.shapes import check_axis, check_rank

MONOSEMANTIC = 0
POLYSEMANTIC = 1
DEAD = 2
LABEL_NAMES = ("monosemantic", "polysemantic", "dead")


def _check_acts_and_ids(func: str, acts_NxH, ids_name: str, ids_N) -> None:
  num_samples = check_rank(func, "acts_NxH", acts_NxH, 2, "samples, neurons")[0]
  check_rank(func, ids_name, ids_N, 1, "samples")
  check_axis(func, ids_name, ids_N, 0, num_samples, "N (the samples of acts_NxH)")


def concept_responses(acts_NxH: jax.Array, concept_ids_N: jax.Array, num_concepts: int) -> jax.Array:
  """Mean activation of each neuron over the samples of each concept, shape (C, H).

  response[c, h] = sum_n [id_n = c] acts[n, h] / max(1, #{n: id_n = c}); a concept without samples
  gets response 0 (not NaN). Ids outside [0, num_concepts) are ignored.
  """
  _check_acts_and_ids("concept_responses", acts_NxH, "concept_ids_N", concept_ids_N)
  one_hot_NxC = jax.nn.one_hot(concept_ids_N, num_concepts, dtype=acts_NxH.dtype)
  sums_CxH = one_hot_NxC.T @ acts_NxH
  counts_C = one_hot_NxC.sum(axis=0)
  return sums_CxH / jnp.maximum(counts_C, 1.0)[:, None]


def concept_response_selectivity(responses_CxH: jax.Array) -> jax.Array:
  """Concept Response Selectivity of each neuron, shape (H,).

  CRS = (r_max - r_second) / r_max over the C >= 2 concepts; CRS = 0 when r_max <= 0 (the neuron is
  silent on every concept). For non-negative (post-ReLU) responses CRS lies in [0, 1].
  """
  shape = check_rank("concept_response_selectivity", "responses_CxH", responses_CxH, 2, "concepts C >= 2, neurons")
  if shape[0] < 2:
    raise DataError(f"concept_response_selectivity: responses_CxH needs C >= 2 concepts on axis 0, got shape "
                    f"{shape}")
  sorted_CxH = jnp.sort(responses_CxH, axis=0)
  top_H = sorted_CxH[-1]
  second_H = sorted_CxH[-2]
  responsive_H = top_H > 0
  # Divide by a safe denominator so the masked-out branch never produces NaN (also in gradients).
  safe_top_H = jnp.where(responsive_H, top_H, 1.0)
  return jnp.where(responsive_H, (top_H - second_H) / safe_top_H, 0.0)


def label_neurons(crs_orientation_H: jax.Array, crs_colour_H: jax.Array, alive_H: jax.Array,
                  threshold: float | jax.Array) -> jax.Array:
  """Labels each neuron MONOSEMANTIC (0), POLYSEMANTIC (1) or DEAD (2), shape (H,) int32.

  dead: never active; polysemantic: alive and CRS < threshold for both orientation and colour;
  monosemantic: alive otherwise.
  """
  num_neurons = check_rank("label_neurons", "crs_orientation_H", crs_orientation_H, 1, "neurons")[0]
  for name, values_H in (("crs_colour_H", crs_colour_H), ("alive_H", alive_H)):
    check_rank("label_neurons", name, values_H, 1, "neurons")
    check_axis("label_neurons", name, values_H, 0, num_neurons, "H (the neurons of crs_orientation_H)")
  unselective_H = (crs_orientation_H < threshold) & (crs_colour_H < threshold)
  alive_label_H = jnp.where(unselective_H, POLYSEMANTIC, MONOSEMANTIC)
  return jnp.where(alive_H, alive_label_H, DEAD).astype(jnp.int32)
