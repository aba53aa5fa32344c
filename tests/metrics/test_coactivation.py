"""Co-activation lift, code correlation and their nulls: numpy references and planted co-firing."""

import jax
import numpy as np
import pytest

from mpcodec.core.configuration import parse
from mpcodec.data import toy_features
from mpcodec.metrics import coactivation as co

PAIR_STATISTICS = jax.jit(co.pair_statistics, static_argnums=(2,))
MATCHED = jax.jit(co.frequency_matched_pairs, static_argnums=(4, 6))
PERMUTATION_NULL = jax.jit(co.permutation_null, static_argnums=(4, 5, 6))
EFFECT = jax.jit(co.coactivation_effect)
LIFT_AND_CORRELATION = jax.jit(lambda codes, pairs: (co.lift(codes, pairs, 0.5, 4),
                                                      co.code_correlation(codes, pairs, 4)))


def _rng(seed=0):
  return np.random.default_rng(seed)


def test_pair_statistics_lift_and_correlation_match_numpy():
  rng = _rng()
  codes = np.where(rng.random((300, 9)) < 0.3, rng.random((300, 9)), 0.0).astype(np.float32)
  codes[:, 8] = 0.0                                     # an atom that never fires
  pairs = rng.integers(0, 9, size=(23, 2))
  for chunk_size in (4, 64):                            # 23 pairs: a partial last chunk, or one chunk
    stats = PAIR_STATISTICS(codes, pairs, chunk_size)
    lift = np.asarray(co.lift_from_counts(stats, 0.5))
    for p, (a, b) in enumerate(pairs):
      fa, fb = codes[:, a] > 0, codes[:, b] > 0
      assert stats.count_a_P[p] == fa.sum() and stats.count_b_P[p] == fb.sum()
      assert stats.count_both_P[p] == (fa & fb).sum()
      expected_lift = ((fa & fb).sum() + 0.5) / (fa.sum() * fb.sum() / 300 + 0.5)
      np.testing.assert_allclose(lift[p], expected_lift, rtol=1e-5)
      constant = codes[:, a].std() == 0 or codes[:, b].std() == 0
      expected_r = 0.0 if constant else np.corrcoef(codes[:, a], codes[:, b])[0, 1]
      np.testing.assert_allclose(stats.correlation_P[p], expected_r, atol=1e-5)
  lift_only, correlation_only = LIFT_AND_CORRELATION(codes, pairs)
  np.testing.assert_allclose(lift_only, lift, rtol=1e-6)
  np.testing.assert_allclose(correlation_only, stats.correlation_P, atol=1e-6)
  # With no data on a pair (an atom never fires) the lift is exactly 1, never inf or NaN.
  assert np.all(np.isfinite(lift)) and np.all(lift[(pairs == 8).any(1)] == 1.0)


@pytest.fixture(scope="module")
def planted_codes():
  """Pairs 0-1 always fire together, 2-3 never together, 4-5 independently (each fires 20%)."""
  cfg = parse(toy_features.FeatureConfig, dict(num_features=6, sparsity=0.8, correlated_groups=[[0, 1]],
                                                anticorrelated_groups=[[2, 3]]))
  return np.asarray(toy_features.sample_features(jax.random.key(0), 20_000, cfg))


def test_planted_cofiring_exclusion_and_independence(planted_codes):
  pairs = np.array([[0, 1], [2, 3], [4, 5]])
  stats = PAIR_STATISTICS(planted_codes, pairs, 256)
  lift = np.asarray(co.lift_from_counts(stats))
  assert lift[0] > 3.0                  # P(a∧b) = 0.2 against 0.04: lift 5
  assert lift[1] < 0.1                  # never together: lift 0 up to the pseudo-count
  assert abs(np.log(lift[2])) < 0.15    # independent: 1 within sampling error (~0.07 in log)
  correlation = np.asarray(stats.correlation_P)
  assert correlation[0] > 0.3 and correlation[1] < -0.1 and abs(correlation[2]) < 0.05


def test_permutation_null_breaks_cofiring(planted_codes):
  pairs = np.array([[0, 1], [2, 3], [4, 5]])
  one = np.ones(1, bool)
  null_cofire = np.asarray(PERMUTATION_NULL(jax.random.key(1), planted_codes, pairs[:1], one, 20, 1.0, 256))
  null_independent = np.asarray(PERMUTATION_NULL(jax.random.key(1), planted_codes, pairs[2:], one, 20, 1.0,
                                                 256))
  observed = np.log(np.asarray(co.lift_from_counts(PAIR_STATISTICS(planted_codes, pairs, 256), 1.0)))
  assert observed[0] > null_cofire.max() + 1.0
  assert abs(null_cofire.mean()) < 0.1 and abs(null_independent.mean()) < 0.1
  # Independent atoms: the observed value is an ordinary draw of the null.
  assert abs(observed[2] - null_independent.mean()) < 4 * null_independent.std() + 0.02


def test_frequency_matched_pairs_match_rates_and_avoid_roommates():
  rng = _rng(2)
  rate = rng.uniform(0.01, 0.2, size=200)
  assignment = rng.integers(0, 20, size=200)
  assignment[:10] = -1                                       # dead atoms are never drawn
  pairs = rng.integers(10, 200, size=(300, 2))
  matched, valid = MATCHED(jax.random.key(3), rate, pairs, np.ones(300, bool), 0.1, assignment, 8)
  matched, valid = np.asarray(matched), np.asarray(valid)
  assert valid.mean() > 0.95
  m = matched[valid]
  np.testing.assert_array_less(np.abs(rate[m] - rate[pairs[valid]]), 0.1 * rate[pairs[valid]] + 1e-7)
  assert np.all(assignment[m] >= 0) and np.all(assignment[m[:, 0]] != assignment[m[:, 1]])
  assert np.all(m[:, 0] != m[:, 1])
  # A dead atom of a rate no live atom has: its band holds no candidate, so the pair is invalid.
  lonely_rate, lonely_assignment = rate.copy(), assignment.copy()
  lonely_rate[5], lonely_assignment[5] = 10.0, -1
  _, valid_lonely = MATCHED(jax.random.key(3), lonely_rate, np.array([[5, 60]] * 300), np.ones(300, bool),
                            0.1, lonely_assignment, 8)
  assert not np.asarray(valid_lonely).any()


@pytest.mark.parametrize("kind, sign", [("together", 1), ("apart", -1)])
def test_coactivation_effect_reads_both_directions(kind, sign):
  """Roommates planted to co-fire give effect > 0, to exclude each other effect < 0."""
  groups = [[2 * i, 2 * i + 1] for i in range(10)]
  cfg = parse(toy_features.FeatureConfig, dict(
      num_features=40, sparsity=0.8,
      **({"correlated_groups": groups} if kind == "together" else {"anticorrelated_groups": groups})))
  codes = np.asarray(toy_features.sample_features(jax.random.key(4), 8000, cfg))
  assignment = np.concatenate([np.repeat(np.arange(10), 2), np.arange(10, 30)])   # roommates = groups
  pairs, valid = np.array(groups), np.ones(10, bool)
  rate = (codes > 0).mean(0)
  matched, matched_valid = MATCHED(jax.random.key(5), rate, pairs, valid, 0.2, assignment, 8)
  effect = EFFECT(codes, pairs, valid, matched, matched_valid)
  assert int(effect.num_pairs) >= 9
  assert sign * float(effect.effect) > 1.0
  fires = codes > 0
  n_a, n_b = fires[:, pairs[:, 0]].sum(0), fires[:, pairs[:, 1]].sum(0)
  n_ab = (fires[:, pairs[:, 0]] & fires[:, pairs[:, 1]]).sum(0)
  reference = np.log((n_ab + 1.0) / (n_a * n_b / len(codes) + 1.0))[np.asarray(matched_valid)].mean()
  np.testing.assert_allclose(effect.roommates_mean_log_lift, reference, rtol=1e-5)


def test_no_pairs_give_zero_counts_not_nan():
  codes = _rng(6).random((50, 4)).astype(np.float32)
  effect = EFFECT(codes, np.zeros((3, 2), np.int32), np.zeros(3, bool), np.zeros((3, 2), np.int32),
                  np.zeros(3, bool))
  assert int(effect.num_pairs) == 0
  assert np.all(np.isfinite([effect.effect, effect.roommates_mean_log_lift, effect.matched_mean_log_lift]))
