"""Co-activation of atom pairs (roommates and their nulls): lift, code correlation, matched pairs.

All functions are pure and jittable. Pair statistics over the data run in one jitted pass: the pairs are
cut into fixed-size chunks (padded to a multiple of `chunk_size`) that `lax.map` visits in turn, so no
(B, P) array is formed and no Python loop runs over pairs. "Fires" means code > 0.

A pair array `pairs_Px2` holds atom indices (a, b); a `valid_P` mask marks padding (False) so that
shapes stay static. Statistics of invalid pairs are computed on whatever indices they hold and must be
masked by the caller (the `mean_*` reducers below take the mask).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mpcodec.metrics.shapes import check_axis, check_index_range, check_rank


def check_pairs(func: str, name: str, pairs_Px2, num_atoms: int, meaning: str) -> int:
  """Number of pairs P of a pair array (P, 2); concrete atom indices must lie in [0, num_atoms)."""
  num_pairs = check_rank(func, name, pairs_Px2, 2, "pairs, 2 atoms")[0]
  check_axis(func, name, pairs_Px2, 1, 2, "the 2 atoms (a, b) of a pair")
  check_index_range(func, name, pairs_Px2, num_atoms, meaning)
  return num_pairs


def check_pair_mask(func: str, name: str, mask_P, num_pairs: int) -> None:
  """A mask (or any per-pair array) over P pairs; None passes."""
  if mask_P is not None:
    check_rank(func, name, mask_P, 1, "pairs")
    check_axis(func, name, mask_P, 0, num_pairs, "P (the pairs)")


def map_over_pair_chunks(fn: Callable[..., tuple[jax.Array, ...]], per_pair: tuple[jax.Array, ...],
                         chunk_size: int) -> tuple[jax.Array, ...]:
  """Applies fn to consecutive chunks of the per-pair arrays (leading axis P) and concatenates.

  The arrays are padded with zeros to a multiple of chunk_size (index 0 is a valid atom), fn sees
  (chunk_size, ...) slices and returns a tuple of (chunk_size, ...) arrays; the result is cut back to P.
  """
  num_pairs = per_pair[0].shape[0]
  chunk_size = max(1, min(chunk_size, num_pairs))
  num_chunks = -(-num_pairs // chunk_size)
  padded = num_chunks * chunk_size

  def cut(a):
    a = jnp.pad(a, [(0, padded - num_pairs)] + [(0, 0)] * (a.ndim - 1))
    return a.reshape((num_chunks, chunk_size) + a.shape[1:])

  out = jax.lax.map(lambda chunk: fn(*chunk), tuple(cut(a) for a in per_pair))
  return tuple(o.reshape((padded,) + o.shape[2:])[:num_pairs] for o in out)


def _check_codes_and_pairs(func: str, codes_BxN, pairs_Px2) -> int:
  """Number of pairs P; codes (B, N) and pairs of atoms in [0, N)."""
  num_atoms = check_rank(func, "codes_BxN", codes_BxN, 2, "samples, atoms")[1]
  return check_pairs(func, "pairs_Px2", pairs_Px2, num_atoms, "atoms (columns of codes_BxN)")


class PairStatistics(NamedTuple):
  """Firing counts and code moments of atom pairs over B samples.

  count_a_P, count_b_P: samples on which a (b) fires; count_both_P: on which both fire;
  correlation_P: Pearson correlation of the two code columns (0 when either is constant);
  num_samples: B.
  """

  count_a_P: jax.Array
  count_b_P: jax.Array
  count_both_P: jax.Array
  correlation_P: jax.Array
  num_samples: int


def pair_statistics(codes_BxN: jax.Array, pairs_Px2: jax.Array, chunk_size: int = 256,
                    codes_b_BxN: jax.Array | None = None) -> PairStatistics:
  """Counts n_a, n_b, n_ab and the code correlation of every pair, in one chunked pass over the pairs.

  `codes_b_BxN` (default: codes_BxN) is where the second atom's codes are read; the permutation null
  passes row-shuffled codes here.
  """
  _check_codes_and_pairs("pair_statistics", codes_BxN, pairs_Px2)
  if codes_b_BxN is not None:
    check_rank("pair_statistics", "codes_b_BxN", codes_b_BxN, 2, "samples, atoms")
    for axis in (0, 1):
      check_axis("pair_statistics", "codes_b_BxN", codes_b_BxN, axis, jnp.shape(codes_BxN)[axis],
                 f"{'BN'[axis]} (as in codes_BxN)")
  codes_BxN = jnp.asarray(codes_BxN, jnp.float32)
  codes_b_BxN = codes_BxN if codes_b_BxN is None else jnp.asarray(codes_b_BxN, jnp.float32)
  num_samples = codes_BxN.shape[0]
  pairs_Px2 = jnp.asarray(pairs_Px2, jnp.int32)
  # Rows per atom (N, B): a chunk gathers contiguous rows instead of strided columns.
  codes_NxB = codes_BxN.T
  codes_b_NxB = codes_b_BxN.T
  fires_N = jnp.sum(codes_BxN > 0, axis=0).astype(jnp.int32)
  mean_N = jnp.mean(codes_BxN, axis=0)
  centered_sq_N = jnp.sum(jnp.square(codes_BxN - mean_N), axis=0)

  def chunk(a_C, b_C):
    za_CxB, zb_CxB = codes_NxB[a_C], codes_b_NxB[b_C]
    both_C = jnp.sum((za_CxB > 0) & (zb_CxB > 0), axis=-1).astype(jnp.int32)
    cross_C = jnp.sum((za_CxB - mean_N[a_C, None]) * (zb_CxB - mean_N[b_C, None]), axis=-1)
    return both_C, cross_C

  both_P, cross_P = map_over_pair_chunks(chunk, (pairs_Px2[:, 0], pairs_Px2[:, 1]), chunk_size)
  a_P, b_P = pairs_Px2[:, 0], pairs_Px2[:, 1]
  denominator_P = jnp.sqrt(centered_sq_N[a_P] * centered_sq_N[b_P])
  correlation_P = jnp.where(denominator_P > 0, cross_P / jnp.where(denominator_P > 0, denominator_P, 1.0),
                            0.0)
  return PairStatistics(fires_N[a_P], fires_N[b_P], both_P, correlation_P, num_samples)


def lift_from_counts(stats: PairStatistics, pseudo_count: float = 1.0) -> jax.Array:
  """Smoothed co-activation lift (n_ab + α) / (n_a·n_b/B + α) per pair.

  The plain lift P(a∧b) / (P(a)P(b)) = n_ab·B / (n_a·n_b) is the limit α → 0. The pseudo-count α adds
  α co-occurrences at the independence rate to both sides, so the estimate is always finite and
  positive (log lift is defined), equals 1 when nothing is known (n_a·n_b = 0) and shrinks toward 1
  when the expected co-occurrence count n_a·n_b/B is small compared to α.
  """
  num_pairs = check_rank("lift_from_counts", "stats.count_both_P", stats.count_both_P, 1, "pairs")[0]
  check_pair_mask("lift_from_counts", "stats.count_a_P", stats.count_a_P, num_pairs)
  check_pair_mask("lift_from_counts", "stats.count_b_P", stats.count_b_P, num_pairs)
  expected_P = stats.count_a_P.astype(jnp.float32) * stats.count_b_P.astype(jnp.float32) / stats.num_samples
  return (stats.count_both_P.astype(jnp.float32) + pseudo_count) / (expected_P + pseudo_count)


def lift(codes_BxN: jax.Array, pairs_Px2: jax.Array, pseudo_count: float = 1.0, chunk_size: int = 256
         ) -> jax.Array:
  """(P,) smoothed co-activation lift of each pair (see `lift_from_counts`); firing = code > 0."""
  _check_codes_and_pairs("lift", codes_BxN, pairs_Px2)
  return lift_from_counts(pair_statistics(codes_BxN, pairs_Px2, chunk_size), pseudo_count)


def code_correlation(codes_BxN: jax.Array, pairs_Px2: jax.Array, chunk_size: int = 256) -> jax.Array:
  """(P,) Pearson correlation of the two atoms' codes over the samples (0 for a constant code)."""
  _check_codes_and_pairs("code_correlation", codes_BxN, pairs_Px2)
  return pair_statistics(codes_BxN, pairs_Px2, chunk_size).correlation_P


def masked_mean(values_P: jax.Array, valid_P: jax.Array) -> jax.Array:
  """Mean over the valid entries; 0 when none is valid (check the count, `jnp.sum(valid_P)`)."""
  valid_P = jnp.asarray(valid_P, bool)
  count = jnp.sum(valid_P)
  return jnp.sum(jnp.where(valid_P, values_P, 0.0)) / jnp.maximum(count, 1)


def frequency_matched_pairs(key: jax.Array, firing_rate_N: jax.Array, pairs_Px2: jax.Array,
                            valid_P: jax.Array, tolerance: float, assignment_N: jax.Array,
                            num_tries: int = 8) -> tuple[jax.Array, jax.Array]:
  """Random pairs (a', b') whose firing rates each match those of the pair (a, b) within a tolerance.

  a' is drawn uniformly among live atoms (assignment >= 0) with |r(a') - r(a)| <= tolerance·r(a), b'
  likewise for b; a draw counts only if a' != b' and assignment[a'] != assignment[b'] (the matched pair
  does not share a neuron). Up to `num_tries` draws per pair; a pair with no acceptable draw, or an
  invalid input pair, comes back invalid. Candidates are a contiguous range of the atoms sorted by rate,
  so the whole draw is O((N + P·tries)·log N).
  Returns (matched_Px2 int32, matched_valid_P bool).
  """
  func = "frequency_matched_pairs"
  num_atoms = check_rank(func, "firing_rate_N", firing_rate_N, 1, "atoms")[0]
  check_rank(func, "assignment_N", assignment_N, 1, "atoms: the neuron of each atom, -1 if dead")
  check_axis(func, "assignment_N", assignment_N, 0, num_atoms, "N (the atoms of firing_rate_N)")
  num_pairs = check_pairs(func, "pairs_Px2", pairs_Px2, num_atoms, "atoms (entries of firing_rate_N)")
  check_pair_mask(func, "valid_P", valid_P, num_pairs)
  rate_N = jnp.asarray(firing_rate_N, jnp.float32)
  assignment_N = jnp.asarray(assignment_N, jnp.int32)
  pairs_Px2 = jnp.asarray(pairs_Px2, jnp.int32)
  num_pairs = pairs_Px2.shape[0]
  live_N = assignment_N >= 0
  # Dead atoms sort first with rate -1, below every range [r(1 - tol), r(1 + tol)] of a live rate r >= 0.
  sort_rate_N = jnp.where(live_N, rate_N, -1.0)
  order_N = jnp.argsort(sort_rate_N)
  sorted_rate_N = sort_rate_N[order_N]

  def candidate_range(atom_P):
    rate_P = rate_N[atom_P]
    low_P = jnp.searchsorted(sorted_rate_N, rate_P * (1.0 - tolerance), side="left")
    high_P = jnp.searchsorted(sorted_rate_N, rate_P * (1.0 + tolerance), side="right")
    return low_P, high_P

  ranges = [candidate_range(pairs_Px2[:, i]) for i in range(2)]
  keys_T = jax.random.split(key, num_tries)

  def draw(key_t):
    key_a, key_b = jax.random.split(key_t)
    picks = []
    for (low_P, high_P), k in zip(ranges, (key_a, key_b)):
      u_P = jax.random.uniform(k, (num_pairs,))
      index_P = low_P + jnp.floor(u_P * (high_P - low_P)).astype(jnp.int32)
      picks.append(order_N[jnp.clip(index_P, 0, order_N.shape[0] - 1)])
    a_P, b_P = picks
    ok_P = (a_P != b_P) & (assignment_N[a_P] != assignment_N[b_P]) & live_N[a_P] & live_N[b_P]
    return jnp.stack([a_P, b_P], axis=-1), ok_P

  drawn_TxPx2, ok_TxP = jax.vmap(draw)(keys_T)
  first_ok_P = jnp.argmax(ok_TxP, axis=0)
  matched_Px2 = drawn_TxPx2[first_ok_P, jnp.arange(num_pairs)]
  nonempty_P = jnp.all(jnp.stack([high - low for low, high in ranges]) > 0, axis=0)
  matched_valid_P = jnp.any(ok_TxP, axis=0) & nonempty_P & jnp.asarray(valid_P, bool)
  return matched_Px2, matched_valid_P


def permutation_null(key: jax.Array, codes_BxN: jax.Array, pairs_Px2: jax.Array, valid_P: jax.Array,
                     num_permutations: int, pseudo_count: float = 1.0, chunk_size: int = 256) -> jax.Array:
  """(R,) mean log lift of the pairs when the second atom's codes are shuffled across samples.

  Each of the R draws permutes the rows of the code matrix read for the second atom of every pair
  (one permutation per draw, shared by the pairs): each atom keeps its firing rate while co-firing with
  its partner is broken, so the draws show the mean log lift that chance and the pseudo-count give.
  """
  num_pairs = _check_codes_and_pairs("permutation_null", codes_BxN, pairs_Px2)
  check_pair_mask("permutation_null", "valid_P", valid_P, num_pairs)
  codes_BxN = jnp.asarray(codes_BxN, jnp.float32)
  num_samples = codes_BxN.shape[0]

  def one(key_r):
    shuffled_BxN = codes_BxN[jax.random.permutation(key_r, num_samples)]
    stats = pair_statistics(codes_BxN, pairs_Px2, chunk_size, codes_b_BxN=shuffled_BxN)
    return masked_mean(jnp.log(lift_from_counts(stats, pseudo_count)), valid_P)

  return jax.lax.map(one, jax.random.split(key, num_permutations))


class CoactivationEffect(NamedTuple):
  """Mean log lift of roommates and of their matched pairs, the difference (effect), the pair count."""

  roommates_mean_log_lift: jax.Array
  matched_mean_log_lift: jax.Array
  effect: jax.Array
  num_pairs: jax.Array


def coactivation_effect(codes_BxN: jax.Array, pairs_Px2: jax.Array, valid_P: jax.Array,
                        matched_Px2: jax.Array, matched_valid_P: jax.Array, pseudo_count: float = 1.0,
                        chunk_size: int = 256) -> CoactivationEffect:
  """effect = mean over pairs p of [log lift(roommate pair p) - log lift(its frequency-matched pair)].

  Only pairs with a valid match count (both means run over the same pairs, so the difference is paired).
  Positive: roommates co-fire more than pairs of the same firing rates; negative: they avoid each other
  (the packing Toy Models of Superposition predicts for a neuron's features). Both directions are read
  from the sign; the two-sided verdict over seeds is computed by the caller from a CI. With no pair,
  the means are 0 and num_pairs is 0.
  """
  func = "coactivation_effect"
  num_pairs = _check_codes_and_pairs(func, codes_BxN, pairs_Px2)
  check_pair_mask(func, "valid_P", valid_P, num_pairs)
  num_atoms = jnp.shape(codes_BxN)[1]
  check_pairs(func, "matched_Px2", matched_Px2, num_atoms, "atoms (columns of codes_BxN)")
  check_axis(func, "matched_Px2", matched_Px2, 0, num_pairs, "P (the pairs of pairs_Px2)")
  check_pair_mask(func, "matched_valid_P", matched_valid_P, num_pairs)
  both_P = jnp.asarray(valid_P, bool) & jnp.asarray(matched_valid_P, bool)
  log_lift_P = jnp.log(lift(codes_BxN, pairs_Px2, pseudo_count, chunk_size))
  log_lift_matched_P = jnp.log(lift(codes_BxN, matched_Px2, pseudo_count, chunk_size))
  roommates = masked_mean(log_lift_P, both_P)
  matched = masked_mean(log_lift_matched_P, both_P)
  return CoactivationEffect(roommates, matched, roommates - matched, jnp.sum(both_P))
