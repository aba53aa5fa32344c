"""Themes: planted themes found by the right input, ARI and affinities against numpy, the roommate null."""

import itertools

import jax
import numpy as np
import pytest

from mpcodec.data import toy_features
from mpcodec.metrics import themes

NUM_ATOMS, DIM, NUM_THEMES, K_RANGE = 256, 64, 8, range(2, 17)


@pytest.fixture(scope="module")
def planted():
  """Both ways at once, on different partitions: co-firing blocks and geometric interleaved themes."""
  cfg = toy_features.ThemeConfig(num_themes=NUM_THEMES, theme_probability=0.5, direction_cosine=0.5)
  dictionary = toy_features.make_themed_dictionary(jax.random.key(0), NUM_ATOMS, DIM, cfg)
  sample = jax.jit(toy_features.sample_dictionary_activations, static_argnums=(1, 3, 5))
  _, codes = sample(jax.random.key(1), 6000, dictionary, 6, 0.0, cfg)
  labels = {kind: toy_features.theme_labels(NUM_ATOMS, cfg, kind) for kind in ("cofiring", "geometric")}
  assert abs(themes.adjusted_rand(labels["cofiring"], labels["geometric"])) < 0.05
  return labels, np.asarray(dictionary), np.asarray(codes)


def _cluster(method="spectral", criterion="silhouette", vectors=None, codes=None):
  affinity = None if codes is None else themes.coactivation_affinity(codes)
  return themes.cluster_atoms(vectors, affinity, method=method, k_range=K_RANGE, criterion=criterion)


@pytest.mark.parametrize("method, criterion", [("spectral", "silhouette"), ("spectral", "eigengap"),
                                               ("kmeans", "silhouette")])
def test_decoder_rows_recover_geometric_themes_only(planted, method, criterion):
  labels, dictionary, _ = planted
  found = _cluster(method, criterion, vectors=dictionary)
  assert themes.adjusted_rand(found.labels_N, labels["geometric"]) >= 0.8
  assert found.num_themes == NUM_THEMES and found.reason is None
  assert sorted(found.theme_sizes) == [NUM_ATOMS // NUM_THEMES] * NUM_THEMES
  # Atom directions say nothing of the co-firing themes.
  assert abs(themes.adjusted_rand(found.labels_N, labels["cofiring"])) < 0.1


@pytest.mark.parametrize("method, criterion", [("spectral", "silhouette"), ("spectral", "eigengap"),
                                               ("hdbscan", "silhouette")])
def test_coactivation_graph_recovers_cofiring_themes_only(planted, method, criterion):
  labels, _, codes = planted
  found = _cluster(method, criterion, codes=codes)
  assert themes.adjusted_rand(found.labels_N, labels["cofiring"]) >= 0.8
  # Co-firing says nothing of the geometric themes.
  assert abs(themes.adjusted_rand(found.labels_N, labels["geometric"])) < 0.1


def test_eigengap_on_clean_blocks():
  # Block-diagonal affinity with 3 blocks: the eigengap picks 3 and the labels are the blocks.
  blocks = np.repeat(np.arange(3), 5)
  affinity = (blocks[:, None] == blocks[None, :]).astype(float) + 0.01
  found = themes.cluster_atoms(affinity_NxN=affinity, k_range=range(2, 8), criterion="eigengap")
  assert found.num_themes == 3 and themes.adjusted_rand(found.labels_N, blocks) == 1.0


def test_affinities_and_ari_match_numpy():
  rng = np.random.default_rng(0)
  codes = np.where(rng.random((200, 7)) < 0.3, rng.random((200, 7)), 0.0)
  codes[:, 6] = 0.0
  affinity = themes.coactivation_affinity(codes)
  fires = codes > 0
  for i, j in itertools.product(range(7), range(7)):
    n_i, n_j = fires[:, i].sum(), fires[:, j].sum()
    expected = 0.0 if n_i == 0 or n_j == 0 else (fires[:, i] & fires[:, j]).sum() / np.sqrt(n_i * n_j)
    np.testing.assert_allclose(affinity[i, j], expected, rtol=1e-12)
  vectors = rng.normal(size=(5, 3))
  cosine = themes.cosine_affinity(vectors)
  for i, j in itertools.product(range(5), range(5)):
    c = vectors[i] @ vectors[j] / np.linalg.norm(vectors[i]) / np.linalg.norm(vectors[j])
    np.testing.assert_allclose(cosine[i, j], max(c, 0.0), atol=1e-12)
  # ARI from its pair-counting formula (Hubert & Arabie 1985); excluded atoms (-1) are left out.
  labels = rng.integers(0, 3, size=40)
  truth = rng.integers(0, 4, size=40)
  labels[:5] = themes.EXCLUDED
  scored = labels >= 0
  table = np.zeros((3, 4))
  np.add.at(table, (labels[scored], truth[scored]), 1)
  comb = lambda n: n * (n - 1) / 2
  index, rows, cols, total = comb(table).sum(), comb(table.sum(1)).sum(), comb(table.sum(0)).sum(), comb(35)
  expected = (index - rows * cols / total) / (0.5 * (rows + cols) - rows * cols / total)
  np.testing.assert_allclose(themes.adjusted_rand(labels, truth), expected, rtol=1e-10)


def test_roommates_share_theme_against_brute_force_and_planted():
  rng = np.random.default_rng(1)
  share = lambda assignment, theme, seed: themes.roommates_share_theme(
      assignment, theme, jax.random.key(seed), 100, num_neurons=10, num_themes=4)   # one compiled shape
  assignment = rng.integers(-1, 6, size=40)
  theme = rng.integers(-1, 4, size=40)
  result = share(assignment, theme, 0)
  counted = [i for i in range(40) if assignment[i] >= 0 and theme[i] >= 0]
  pairs = [(a, b) for a, b in itertools.combinations(counted, 2) if assignment[a] == assignment[b]]
  assert result.num_pairs == len(pairs)
  np.testing.assert_allclose(result.observed, np.mean([theme[a] == theme[b] for a, b in pairs]), rtol=1e-6)
  assert result.null_R.shape == (100,) and np.all((0 <= result.null_R) & (result.null_R <= 1))
  # Planted both ways: neurons that hold one theme each, or one atom of every theme each.
  theme = np.repeat(np.arange(4), 10)
  together = share(theme.copy(), theme, 1)
  apart = share(np.tile(np.arange(10), 4), theme, 1)
  assert together.observed == 1.0 and together.effect > 0.5 and together.null_R.max() < 0.5
  assert apart.observed == 0.0 and apart.effect < -0.1 and apart.null_R.min() > 0.0


def test_bad_inputs_are_recorded_not_crashed():
  vectors = np.random.default_rng(2).normal(size=(6, 3))
  none_live = themes.cluster_atoms(vectors, live_N=np.zeros(6, bool))
  assert none_live.reason == "no live atoms" and np.all(none_live.labels_N == themes.EXCLUDED)
  too_many = themes.cluster_atoms(vectors, k_range=range(6, 40))
  assert "k_range" in too_many.reason and too_many.num_themes == 0
  assert "min_cluster_size" in themes.cluster_atoms(vectors, method="hdbscan", min_cluster_size=10).reason
  nobody = themes.roommates_share_theme(np.full(5, -1), np.zeros(5, int), jax.random.key(0), 10)
  assert nobody.num_pairs == 0 and nobody.observed == 0.0 and np.all(np.isfinite(nobody.null_R))
  assert themes.adjusted_rand(np.full(4, -1), np.zeros(4, int)) == 0.0
