"""The mono->poly selectivity of hidden neurons: orientation, colour and conjunction CRS from the library's
concept responses, under jit and vmap over seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.metrics.selectivity import concept_response_selectivity, concept_responses
from mpcodec.studies.mono_poly import selectivity


def test_the_three_concept_sets_are_the_library_crs_of_their_ids():
  rng = np.random.default_rng(0)
  acts_SxNxH = np.maximum(rng.normal(size=(3, 40, 6)), 0.0).astype(np.float32)
  acts_SxNxH[:, :, 0] = 0.0                                   # a dead neuron
  orientation_SxN = rng.integers(0, 2, (3, 40))
  colour_SxN = rng.integers(0, 2, (3, 40))
  out = jax.jit(jax.vmap(selectivity.mono_poly_selectivity))(acts_SxNxH, orientation_SxN, colour_SxN)
  for s in range(3):
    crs = lambda ids, num: np.asarray(concept_response_selectivity(concept_responses(acts_SxNxH[s], ids, num)))
    np.testing.assert_allclose(out["crs_orientation"][s], crs(orientation_SxN[s], 2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["crs_colour"][s], crs(colour_SxN[s], 2), rtol=1e-5, atol=1e-6)
    # Conjunction id = orientation * 2 + colour: four concepts.
    np.testing.assert_allclose(out["crs_conjunction"][s], crs(orientation_SxN[s] * 2 + colour_SxN[s], 4), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["alive"][s], (acts_SxNxH[s] > 0).any(axis=0))
  assert not out["alive"][:, 0].any()
  # A neuron that answers vertical bars only: orientation CRS 1.
  acts = jnp.asarray(np.where(orientation_SxN[0] == 0, 1.0, 0.0)[:, None], jnp.float32)
  assert float(selectivity.mono_poly_selectivity(acts, orientation_SxN[0], colour_SxN[0])["crs_orientation"][0]) == 1.0


def test_bad_shapes_name_the_argument():
  with pytest.raises(ValueError, match="colour_N"):
    selectivity.mono_poly_selectivity(jnp.ones((4, 2)), jnp.zeros(4, jnp.int32), jnp.zeros(5, jnp.int32))
