"""Ground-truth sparse features and dictionary activations, generated in JAX (no files).

Two kinds of synthetic data with a known answer:

- sparse feature vectors as in Toy Models of Superposition (Elhage et al. 2022): each feature is zero
  with probability S (the sparsity), else uniform on [0, 1]; `FeatureConfig` adds per-feature importance,
  correlated groups (members fire together), anti-correlated groups (at most one member fires) and themes
  (a theme drawn per sample raises the firing probability of its member features);
- activations x = f·D + noise for a known dictionary D with unit-norm rows and exactly k active atoms
  per sample, so that a sparse autoencoder's recovery of D can be scored. `ThemeConfig` plants themes
  in them in two independent ways: co-firing (a sample's theme promotes its members into the k active
  atoms) and geometric (a theme's atoms lie near a shared direction); `theme_labels` gives the truth.

Every sampler is a pure function of an explicit PRNG key, jittable, and vmappable over keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core.errors import DataError


def _positive_uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Uniform on (0, 1]: 1 - U[0, 1), so a drawn magnitude is never exactly zero."""
  return 1.0 - jax.random.uniform(key, shape, dtype=jnp.float32)


def sample_sparse_features(key: jax.Array, batch_size: int, num_features: int,
                           sparsity: float | jax.Array) -> jax.Array:
  """Samples (B, n) float32 features: each 0 with probability `sparsity`, else uniform on [0, 1].

  `sparsity` may be a traced scalar (to vmap over a sparsity grid) or an (n,) array of per-feature
  sparsities. A firing feature's value lies in (0, 1], so "fired" is exactly "value > 0".
  Reference: Elhage et al. 2022, Toy Models of Superposition, section 2.
  """
  key_fire, key_magnitude = jax.random.split(key)
  fires_BxN = jax.random.uniform(key_fire, (batch_size, num_features)) >= sparsity
  magnitudes_BxN = _positive_uniform(key_magnitude, (batch_size, num_features))
  return jnp.where(fires_BxN, magnitudes_BxN, 0.0).astype(jnp.float32)


def make_dictionary(key: jax.Array, num_atoms: int, dim: int) -> jax.Array:
  """Returns a (num_atoms, dim) float32 dictionary: Gaussian rows normalised to unit L2 norm."""
  atoms_NxD = jax.random.normal(key, (num_atoms, dim), dtype=jnp.float32)
  return atoms_NxD / jnp.linalg.norm(atoms_NxD, axis=-1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class ThemeConfig:
  """Planted themes of a ground-truth dictionary (`make_themed_dictionary`, `sample_dictionary_activations`).

  The first `themed_atoms` atoms (0 = all) belong to themes, the rest to none (-1). The two ways of
  planting are independent, either may be off, and they partition the atoms differently, so that one run
  tells which analysis finds which (`theme_labels`): co-firing themes are contiguous blocks, atom i has
  theme floor(i·T / themed_atoms); geometric themes are interleaved, atom i has theme i mod T. With
  T² <= themed_atoms every block holds atoms of every geometric theme (the two partitions' ARI is ~0).

  Attributes:
    num_themes: T; 0 = no themes (the plain generator, bit for bit).
    themed_atoms: atoms that belong to a theme (the first ones); 0 = every atom.
    theme_probability: co-firing: probability that a sample has a theme, drawn uniformly among the T;
      each member of that theme is then promoted with probability `member_probability` into the sample's
      k active atoms (promoted atoms outrank all others; if more than k are promoted, k of them are
      chosen uniformly). Still exactly k active atoms per sample. 0 = no co-firing.
    member_probability: see theme_probability.
    direction_cosine: geometric: each theme has a random unit direction u_t and its atoms are
      normalise(c·u_t + sqrt(1 - c²)·v) with v a random unit vector orthogonal to u_t, so
      cos(atom, u_t) = c exactly and two atoms of a theme have cosine about c² (angle arccos c to the
      theme direction; c = 0.5 is 60°). 0 = plain random atoms (make_dictionary, bit for bit).
  """

  num_themes: int = 0
  themed_atoms: int = 0
  theme_probability: float = 0.0
  member_probability: float = 0.25
  direction_cosine: float = 0.0

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    yield "num_themes", self.num_themes >= 0, f"must be >= 0, got {self.num_themes}"
    yield "themed_atoms", self.themed_atoms >= 0, f"must be >= 0 (0 = every atom), got {self.themed_atoms}"
    yield "theme_probability", 0.0 <= self.theme_probability <= 1.0, (
        f"must lie in [0, 1], got {self.theme_probability}")
    yield "member_probability", 0.0 <= self.member_probability <= 1.0, (
        f"must lie in [0, 1], got {self.member_probability}")
    yield "direction_cosine", 0.0 <= self.direction_cosine <= 1.0, (
        f"must lie in [0, 1], got {self.direction_cosine}")

  @property
  def cofiring(self) -> bool:
    return self.num_themes > 0 and self.theme_probability > 0

  @property
  def geometric(self) -> bool:
    return self.num_themes > 0 and self.direction_cosine > 0


def theme_labels(num_atoms: int, cfg: ThemeConfig, kind: Literal["cofiring", "geometric"] = "cofiring"
                 ) -> np.ndarray:
  """(num_atoms,) int32 ground-truth theme of each atom (-1 = none) for one way of planting; see ThemeConfig.

  The labels do not depend on whether that way is switched on (check `cfg.cofiring` / `cfg.geometric`).
  """
  if cfg.num_themes == 0:
    return np.full(num_atoms, -1, np.int32)
  themed = cfg.themed_atoms or num_atoms
  if not cfg.num_themes <= themed <= num_atoms:
    raise DataError(f"themes: need num_themes={cfg.num_themes} <= themed_atoms={themed} <= "
                    f"num_atoms={num_atoms}")
  labels = np.full(num_atoms, -1, np.int32)
  index = np.arange(themed)
  labels[:themed] = index * cfg.num_themes // themed if kind == "cofiring" else index % cfg.num_themes
  return labels


def feature_theme_labels(cfg: FeatureConfig) -> np.ndarray:
  """(n,) int32 theme of each feature of a `FeatureConfig` (its first theme; -1 = none)."""
  labels = np.full(cfg.num_features, -1, np.int32)
  for t, members in reversed(list(enumerate(cfg.themes))):
    labels[list(members)] = t
  return labels


def themed_dictionary(key: jax.Array, theme_N: np.ndarray | jax.Array, dim: int, direction_cosine: float
                      ) -> jax.Array:
  """(N, dim) unit rows; atoms of theme t are normalise(c·u_t + sqrt(1 - c²)·v), unthemed ones Gaussian.

  u_t: a random unit direction per theme; v: a random unit vector orthogonal to u_t, one per atom.
  `theme_N` holds each atom's theme (-1 = none), e.g. `theme_labels` or `feature_theme_labels`.
  """
  theme_N = jnp.asarray(theme_N, jnp.int32)
  num_atoms = theme_N.shape[0]
  num_themes = max(int(np.max(np.asarray(theme_N), initial=-1)) + 1, 1)
  key_direction, key_atom = jax.random.split(key)
  directions_TxD = make_dictionary(key_direction, num_themes, dim)
  gaussian_NxD = jax.random.normal(key_atom, (num_atoms, dim), jnp.float32)
  u_NxD = directions_TxD[jnp.maximum(theme_N, 0)]
  orthogonal_NxD = gaussian_NxD - jnp.sum(gaussian_NxD * u_NxD, axis=-1, keepdims=True) * u_NxD
  orthogonal_NxD = orthogonal_NxD / jnp.linalg.norm(orthogonal_NxD, axis=-1, keepdims=True)
  cosine = jnp.float32(direction_cosine)
  themed_NxD = cosine * u_NxD + jnp.sqrt(1.0 - cosine * cosine) * orthogonal_NxD
  themed_NxD = themed_NxD / jnp.linalg.norm(themed_NxD, axis=-1, keepdims=True)
  plain_NxD = gaussian_NxD / jnp.linalg.norm(gaussian_NxD, axis=-1, keepdims=True)
  return jnp.where((theme_N >= 0)[:, None], themed_NxD, plain_NxD)


def make_themed_dictionary(key: jax.Array, num_atoms: int, dim: int, cfg: ThemeConfig) -> jax.Array:
  """`make_dictionary` when cfg has no geometric themes (same bits), else `themed_dictionary`."""
  if not cfg.geometric:
    return make_dictionary(key, num_atoms, dim)
  return themed_dictionary(key, theme_labels(num_atoms, cfg, "geometric"), dim, cfg.direction_cosine)


def sample_dictionary_activations(key: jax.Array, batch_size: int, dictionary_NxD: jax.Array,
                                  k_active: int, noise_std: float | jax.Array,
                                  themes: ThemeConfig | None = None) -> tuple[jax.Array, jax.Array]:
  """Samples x = f·D + noise_std·N(0, 1) with exactly `k_active` atoms active per sample.

  The active atoms of a sample are chosen uniformly without replacement (top-k of uniform scores);
  their coefficients are uniform on (0, 1] (never exactly 0, so the count of nonzeros is exactly k)
  and all other coefficients are 0. With co-firing themes (`themes.cofiring`), a sample has a theme
  with probability theme_probability and each member of it is promoted with probability
  member_probability: a promoted atom's score gets +1, so it is chosen before any other. Without them,
  the draw is the same as with `themes=None`, bit for bit.
  Returns (x_BxD, f_BxN), both float32.
  """
  num_atoms, dim = dictionary_NxD.shape
  if not 0 < k_active <= num_atoms:
    raise ValueError(f"k_active={k_active} must be in [1, num_atoms={num_atoms}]")
  key_choice, key_coef, key_noise = jax.random.split(key, 3)
  scores_BxN = jax.random.uniform(key_choice, (batch_size, num_atoms))
  if themes is not None and themes.cofiring:
    # Keys of their own (fold_in), so the three draws above are those of an unthemed sample.
    key_has, key_which, key_member = jax.random.split(jax.random.fold_in(key, 1), 3)
    theme_N = jnp.asarray(theme_labels(num_atoms, themes, "cofiring"))
    has_theme_B = jax.random.uniform(key_has, (batch_size,)) < themes.theme_probability
    theme_B = jax.random.randint(key_which, (batch_size,), 0, themes.num_themes)
    promoted_BxN = (has_theme_B[:, None] & (theme_N[None, :] == theme_B[:, None])
                    & (jax.random.uniform(key_member, (batch_size, num_atoms)) < themes.member_probability))
    scores_BxN = scores_BxN + promoted_BxN.astype(jnp.float32)
  _, active_BxK = jax.lax.top_k(scores_BxN, k_active)
  coefficients_BxK = _positive_uniform(key_coef, (batch_size, k_active))
  rows_Bx1 = jnp.arange(batch_size)[:, None]
  # Scatter by index (not a score threshold) so ties can never change the count of active atoms.
  f_BxN = jnp.zeros((batch_size, num_atoms), jnp.float32).at[rows_Bx1, active_BxK].set(coefficients_BxK)
  noise_BxD = jax.random.normal(key_noise, (batch_size, dim), dtype=jnp.float32)
  x_BxD = f_BxN @ dictionary_NxD.astype(jnp.float32) + noise_std * noise_BxD
  return x_BxD.astype(jnp.float32), f_BxN


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  """Knobs of the structured sparse-feature generator (`sample_features`).

  Attributes:
    num_features: n, the number of ground-truth features.
    sparsity: S, the probability that a plain feature is zero; it fires (uniform on (0, 1]) with 1 - S.
    importance_decay: feature i has importance decay**i (1.0 = uniform importance).
    correlated_groups: disjoint groups of feature indices whose members fire together: one Bernoulli(1 - S)
      draw per group and sample decides all members; magnitudes stay independent.
    anticorrelated_groups: groups of which at most one member fires: the group fires with probability
      min(1, |g|·(1 - S)), then exactly one member, chosen uniformly, fires; each member thus keeps the
      marginal 1 - S whenever |g|·(1 - S) <= 1 (required for the configured sparsity).
    themes: clusters of features that tend to fire together; may overlap each other but not the groups.
    theme_probability: probability that a sample has a theme; the theme is then drawn uniformly.
    theme_firing_probability: firing probability of a member of the sample's theme (>= 1 - S).
  """

  num_features: int = 5
  sparsity: float = 0.9
  importance_decay: float = 1.0
  correlated_groups: tuple[tuple[int, ...], ...] = ()
  anticorrelated_groups: tuple[tuple[int, ...], ...] = ()
  themes: tuple[tuple[int, ...], ...] = ()
  theme_probability: float = 0.0
  theme_firing_probability: float = 0.5

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    n = self.num_features
    yield "num_features", n >= 1, f"must be >= 1, got {n}"
    yield "sparsity", 0.0 <= self.sparsity <= 1.0, f"must lie in [0, 1], got {self.sparsity}"
    yield "importance_decay", self.importance_decay > 0.0, f"must be > 0, got {self.importance_decay}"
    grouped: set[int] = set()
    for name in ("correlated_groups", "anticorrelated_groups", "themes"):
      for g, members in enumerate(getattr(self, name)):
        key = f"{name}[{g}]"
        yield key, len(members) >= (1 if name == "themes" else 2), (
            "needs at least 2 features (1 for a theme)")
        yield key, all(0 <= i < n for i in members), f"feature indices must lie in [0, {n}), got {members}"
        yield key, len(set(members)) == len(members), f"repeats a feature: {members}"
        if name != "themes":
          yield key, not grouped & set(members), f"shares features with another group: {members}"
          grouped |= set(members)
    themed = {i for theme in self.themes for i in theme}
    yield "themes", not themed & grouped, (
        f"features {sorted(themed & grouped)} are both in a theme and a (anti-)correlated group")
    firing = 1.0 - self.sparsity
    for g, members in enumerate(self.anticorrelated_groups):
      yield f"anticorrelated_groups[{g}]", len(members) * firing <= 1.0 + 1e-9, (
          f"{len(members)} members x firing probability {firing:g} > 1: the marginal 1 - sparsity "
          "cannot be kept with at most one member firing")
    yield "theme_probability", 0.0 <= self.theme_probability <= 1.0, (
        f"must lie in [0, 1], got {self.theme_probability}")
    yield "theme_probability", self.theme_probability == 0.0 or bool(self.themes), (
        "is > 0 but no themes are configured")
    yield "theme_firing_probability", firing <= self.theme_firing_probability <= 1.0, (
        f"must lie in [1 - sparsity = {firing:g}, 1], got {self.theme_firing_probability}")


def feature_importance(cfg: FeatureConfig) -> jax.Array:
  """Per-feature importance I_i = importance_decay**i, shape (n,)."""
  return jnp.asarray(cfg.importance_decay, jnp.float32) ** jnp.arange(cfg.num_features, dtype=jnp.float32)


def _group_index(groups: tuple[tuple[int, ...], ...], num_features: int) -> tuple[np.ndarray, np.ndarray]:
  """(n,) group id of each feature (-1 = none) and (n,) position of the feature inside its group."""
  group_id = np.full(num_features, -1, np.int32)
  position = np.zeros(num_features, np.int32)
  for g, members in enumerate(groups):
    group_id[list(members)] = g
    position[list(members)] = np.arange(len(members))
  return group_id, position


def expected_firing_probability(cfg: FeatureConfig, sparsity: float | None = None) -> np.ndarray:
  """Closed-form marginal probability that each feature is nonzero under `sample_features`, shape (n,).

  plain or correlated: 1 - S; anti-correlated member of g: min(1, |g|·(1 - S)) / |g|;
  theme member: (1 - P_i)·(1 - S) + P_i·q, with P_i = theme_probability · #themes containing i / #themes
  and q = theme_firing_probability.
  """
  firing = 1.0 - (cfg.sparsity if sparsity is None else float(sparsity))
  prob = np.full(cfg.num_features, firing, np.float64)
  for members in cfg.anticorrelated_groups:
    prob[list(members)] = min(1.0, len(members) * firing) / len(members)
  if cfg.themes:
    theme_share = np.zeros(cfg.num_features)
    for members in cfg.themes:
      theme_share[list(members)] += cfg.theme_probability / len(cfg.themes)
    prob = (1.0 - theme_share) * prob + theme_share * cfg.theme_firing_probability
  return prob


def sample_features(key: jax.Array, batch_size: int, cfg: FeatureConfig,
                    sparsity: float | jax.Array | None = None) -> jax.Array:
  """Samples (B, n) float32 features with the importance-free structure of `cfg` (groups, themes).

  Nonzero values are uniform on (0, 1]. `sparsity` (a scalar, may be traced) overrides `cfg.sparsity`
  so one compiled program can sweep it; anti-correlated groups then clip to min(1, |g|·(1 - S)).
  """
  n = cfg.num_features
  firing = 1.0 - (cfg.sparsity if sparsity is None else sparsity)
  keys = jax.random.split(key, 8)
  uniform_BxN = jax.random.uniform(keys[0], (batch_size, n))
  firing_BxN = jnp.broadcast_to(jnp.asarray(firing, jnp.float32), (batch_size, n))

  if cfg.themes:
    membership_TxN = np.zeros((len(cfg.themes), n), bool)
    for t, members in enumerate(cfg.themes):
      membership_TxN[t, list(members)] = True
    has_theme_B = jax.random.uniform(keys[1], (batch_size,)) < cfg.theme_probability
    theme_B = jax.random.randint(keys[2], (batch_size,), 0, len(cfg.themes))
    in_theme_BxN = has_theme_B[:, None] & jnp.asarray(membership_TxN)[theme_B]
    firing_BxN = jnp.where(in_theme_BxN, cfg.theme_firing_probability, firing_BxN)

  if cfg.correlated_groups:
    group_id, _ = _group_index(cfg.correlated_groups, n)
    # One shared uniform per group: members compare the same number to the same threshold.
    group_uniform_BxG = jax.random.uniform(keys[3], (batch_size, len(cfg.correlated_groups)))
    uniform_BxN = jnp.where(group_id >= 0, group_uniform_BxG[:, np.maximum(group_id, 0)], uniform_BxN)
  fires_BxN = uniform_BxN < firing_BxN

  if cfg.anticorrelated_groups:
    group_id, position = _group_index(cfg.anticorrelated_groups, n)
    sizes_A = np.array([len(g) for g in cfg.anticorrelated_groups], np.int32)
    group_fires_BxA = (jax.random.uniform(keys[4], (batch_size, len(sizes_A)))
                       < jnp.minimum(1.0, sizes_A * firing))
    chosen_BxA = jax.random.randint(keys[5], (batch_size, len(sizes_A)), 0, sizes_A)
    safe_id = np.maximum(group_id, 0)
    member_fires_BxN = group_fires_BxA[:, safe_id] & (chosen_BxA[:, safe_id] == position)
    fires_BxN = jnp.where(group_id >= 0, member_fires_BxN, fires_BxN)

  magnitudes_BxN = _positive_uniform(keys[6], (batch_size, n))
  return jnp.where(fires_BxN, magnitudes_BxN, 0.0).astype(jnp.float32)
