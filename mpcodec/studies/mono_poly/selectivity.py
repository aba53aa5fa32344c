"""Selectivity of the mono->poly network's hidden neurons for the bars' concepts: orientation, colour and
their four conjunctions (Concept Response Selectivity, `mpcodec.metrics.selectivity`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mpcodec.data.bars import COLOUR_NAMES, ORIENTATION_NAMES
from mpcodec.metrics.selectivity import concept_response_selectivity, concept_responses
from mpcodec.metrics.shapes import check_axis, check_rank

# Orientation 0/1 (vertical/horizontal), colour 0/1 (red/blue); the conjunction id is orientation * 2 + colour.
NUM_ORIENTATIONS = len(ORIENTATION_NAMES)
NUM_COLOURS = len(COLOUR_NAMES)


def _check_acts_and_ids(func: str, acts_NxH, ids_name: str, ids_N) -> None:
  num_samples = check_rank(func, "acts_NxH", acts_NxH, 2, "samples, neurons")[0]
  check_rank(func, ids_name, ids_N, 1, "samples")
  check_axis(func, ids_name, ids_N, 0, num_samples, "N (the samples of acts_NxH)")


def mono_poly_selectivity(acts_NxH: jax.Array, orientation_N: jax.Array,
                          colour_N: jax.Array) -> dict[str, jax.Array]:
  """CRS for the orientation pair, the colour pair and the four orientation x colour conjunctions.

  Returns {"crs_orientation", "crs_colour", "crs_conjunction"}: (H,) floats, and "alive": (H,) bool,
  True where the neuron is active (> 0) on at least one sample.
  """
  _check_acts_and_ids("mono_poly_selectivity", acts_NxH, "orientation_N", orientation_N)
  _check_acts_and_ids("mono_poly_selectivity", acts_NxH, "colour_N", colour_N)
  crs_orientation = concept_response_selectivity(
      concept_responses(acts_NxH, orientation_N, NUM_ORIENTATIONS))
  crs_colour = concept_response_selectivity(concept_responses(acts_NxH, colour_N, NUM_COLOURS))
  conjunction_N = orientation_N * NUM_COLOURS + colour_N
  crs_conjunction = concept_response_selectivity(
      concept_responses(acts_NxH, conjunction_N, NUM_ORIENTATIONS * NUM_COLOURS))
  return {
      "crs_orientation": crs_orientation,
      "crs_colour": crs_colour,
      "crs_conjunction": crs_conjunction,
      "alive": jnp.any(acts_NxH > 0, axis=0),
  }
