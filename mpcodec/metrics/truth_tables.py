"""Roommates and truth tables of neurons that encode sparse atoms: which logic a neuron computes on its atoms.

Atom i lives in the synthetic neuron that drives it most (`hard_assignment`); roommates are live atoms
sharing a neuron. For a pair (a, b) read through neuron m, the truth table is m's mean activation in the
four cases of the pair's SAE codes (firing = code > 0), in the order

  (neither, only a, only b, both) = (f00, f10, f01, f11),

with the interaction I = f11 - f10 - f01 + f00 (0 for a neuron that adds its inputs' effects). A table
is classified with a margin δ = margin·σ_m relative to the neuron's activation scale σ_m, its standard
deviation over the data ("clearly above": a difference > δ; "near": |difference| <= δ):

  XOR: f10 and f01 clearly above f00, and f11 clearly below min(f10, f01);
  OR:  f10 and f01 clearly above f00, and f11 not clearly above max(f10, f01);
  AND: f10 and f01 near f00, and f11 clearly above max(f00, f10, f01);
  OTHER: anything else (an additive neuron, f11 ≈ f10 + f01 - f00, is OTHER);
  UNTESTABLE: a cell with fewer than `min_count` samples (counted, never classified).

Every XOR table also satisfies the OR condition (f11 far below max is "not clearly above"), so XOR is
tested first. All functions are pure and jittable; every pair is handled in one jitted pass
(`coactivation.map_over_pair_chunks`), with static shapes through padding and validity masks.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mpcodec.metrics.callable_module import make_callable
from mpcodec.metrics.coactivation import check_pair_mask, check_pairs, map_over_pair_chunks
from mpcodec.metrics.shapes import check_axis, check_index_range, check_rank

OR, AND, XOR, OTHER, UNTESTABLE = range(5)
CLASS_NAMES = ("OR", "AND", "XOR", "OTHER", "UNTESTABLE")
CELL_NAMES = ("neither", "only_a", "only_b", "both")


# ----------------------------------------------------------------------------- roommates


def _check_encoder(func: str, w_enc_MxN, live_N) -> None:
  num_atoms = check_rank(func, "w_enc_MxN", w_enc_MxN, 2, "neurons, atoms")[1]
  check_rank(func, "live_N", live_N, 1, "atoms")
  check_axis(func, "live_N", live_N, 0, num_atoms, "N (the atoms of w_enc_MxN)")


def _check_assignment(func: str, assignment_N, num_neurons: int | None = None) -> None:
  check_rank(func, "assignment_N", assignment_N, 1, "atoms: the neuron of each atom, -1 if dead")
  if num_neurons is not None:
    check_index_range(func, "assignment_N", assignment_N, num_neurons, "neurons (or -1 for a dead atom)", lower=-1)


def hard_assignment(w_enc_MxN: jax.Array, live_N: jax.Array) -> jax.Array:
  """(N,) int32 neuron of each atom: argmax_m W_enc[m, i] (as `codec.latents_per_neuron`), -1 if dead.

  `w_enc_MxN` holds one row of atom weights per neuron (an encoder of the N atoms' codes into M neurons).
  """
  _check_encoder("hard_assignment", w_enc_MxN, live_N)
  owner_N = jnp.argmax(jnp.asarray(w_enc_MxN), axis=0).astype(jnp.int32)
  return jnp.where(jnp.asarray(live_N, bool), owner_N, -1)


def soft_assignment(w_enc_MxN: jax.Array, live_N: jax.Array) -> jax.Array:
  """(N, M) share of atom i's positive encoder weight going to each neuron: max(W[m,i],0)/Σ_m max(W[m,i],0).

  Only positive weights count: codes are non-negative and a Top-K encoder keeps its largest pre-activations,
  so a negative weight never makes neuron m carry atom i. Rows of dead atoms, or of atoms without any
  positive weight, are 0.
  """
  _check_encoder("soft_assignment", w_enc_MxN, live_N)
  positive_NxM = jnp.maximum(jnp.asarray(w_enc_MxN, jnp.float32), 0.0).T
  total_N = jnp.sum(positive_NxM, axis=-1, keepdims=True)
  share_NxM = positive_NxM / jnp.where(total_N > 0, total_N, 1.0)
  return jnp.where(jnp.asarray(live_N, bool)[:, None], share_NxM, 0.0)


def count_roommate_pairs(assignment_N: jax.Array, num_neurons: int) -> jax.Array:
  """Number of roommate pairs Σ_m c_m (c_m - 1) / 2, c_m = live atoms of neuron m (to size `max_pairs`)."""
  _check_assignment("count_roommate_pairs", assignment_N, num_neurons)
  assignment_N = jnp.asarray(assignment_N, jnp.int32)
  counts_M = jnp.zeros(num_neurons, jnp.int32).at[assignment_N].add((assignment_N >= 0).astype(jnp.int32),
                                                                     mode="drop")
  return jnp.sum(counts_M * (counts_M - 1) // 2)


def roommate_pairs(assignment_N: jax.Array, num_neurons: int, max_pairs: int
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Every pair of live atoms sharing a neuron, padded to `max_pairs`: (pairs_Px2, neuron_P, valid_P).

  Pairs (a, b) have a < b and come neuron by neuron (neuron ascending, then b, then a). Pairs past
  `max_pairs` are dropped (compare with `count_roommate_pairs`); padding rows are (0, 0), neuron 0,
  invalid. Built from the atoms sorted by neuron, where the pairs of pair index t are found by a search in
  the running count of pairs, so nothing of size N² is formed.
  """
  _check_assignment("roommate_pairs", assignment_N, num_neurons)
  assignment_N = jnp.asarray(assignment_N, jnp.int32)
  num_atoms = assignment_N.shape[0]
  sort_key_N = jnp.where(assignment_N >= 0, assignment_N, num_neurons)
  order_N = jnp.argsort(sort_key_N, stable=True)
  sorted_key_N = sort_key_N[order_N]
  position_N = jnp.arange(num_atoms)
  group_start_N = jnp.searchsorted(sorted_key_N, sorted_key_N, side="left")
  # Sorted atom p pairs with the earlier atoms of its neuron: positions group_start .. p - 1.
  partners_N = jnp.where(sorted_key_N < num_neurons, position_N - group_start_N, 0)
  end_N = jnp.cumsum(partners_N)
  total = end_N[-1] if num_atoms else jnp.zeros((), jnp.int32)
  t_P = jnp.arange(max_pairs)
  p_P = jnp.clip(jnp.searchsorted(end_N, t_P, side="right"), 0, max(num_atoms - 1, 0))
  q_P = group_start_N[p_P] + t_P - (end_N[p_P] - partners_N[p_P])
  valid_P = t_P < total
  a_P = jnp.where(valid_P, order_N[jnp.clip(q_P, 0, max(num_atoms - 1, 0))], 0)
  b_P = jnp.where(valid_P, order_N[p_P], 0)
  neuron_P = jnp.where(valid_P, assignment_N[b_P], 0)
  return jnp.stack([a_P, b_P], axis=-1).astype(jnp.int32), neuron_P.astype(jnp.int32), valid_P


def _live_atoms(assignment_N: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(indices of live atoms padded with 0, number of live atoms)."""
  live_N = assignment_N >= 0
  return jnp.nonzero(live_N, size=assignment_N.shape[0], fill_value=0)[0], jnp.sum(live_N)


def random_nonroommate_pairs(key: jax.Array, assignment_N: jax.Array, num_pairs: int, num_tries: int = 8
                             ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Null pairs: two live atoms drawn uniformly that do not share a neuron, read through a's neuron.

  Returns (pairs_Px2, neuron_P = assignment[a], valid_P); a pair is valid if one of `num_tries` draws
  put a and b in different neurons (with fewer than two occupied neurons none is).
  """
  _check_assignment("random_nonroommate_pairs", assignment_N)
  assignment_N = jnp.asarray(assignment_N, jnp.int32)
  live_index_N, num_live = _live_atoms(assignment_N)

  def draw(key_t):
    index_2xP = jax.random.randint(key_t, (2, num_pairs), 0, jnp.maximum(num_live, 1))
    a_P, b_P = live_index_N[index_2xP[0]], live_index_N[index_2xP[1]]
    return jnp.stack([a_P, b_P], axis=-1), assignment_N[a_P] != assignment_N[b_P]

  drawn_TxPx2, ok_TxP = jax.vmap(draw)(jax.random.split(key, num_tries))
  first_ok_P = jnp.argmax(ok_TxP, axis=0)
  pairs_Px2 = drawn_TxPx2[first_ok_P, jnp.arange(num_pairs)].astype(jnp.int32)
  valid_P = jnp.any(ok_TxP, axis=0) & (num_live >= 2)
  return pairs_Px2, jnp.where(valid_P, assignment_N[pairs_Px2[:, 0]], 0), valid_P


def permuted_assignment(key: jax.Array, assignment_N: jax.Array) -> jax.Array:
  """The live atoms' neurons shuffled among the live atoms: every neuron keeps its number of atoms.

  The null "encoder whose atom-to-neuron assignment is permuted": roommates become random atoms while
  the neurons' activations and occupancies stay as they are. Dead atoms stay -1.
  """
  _check_assignment("permuted_assignment", assignment_N)
  assignment_N = jnp.asarray(assignment_N, jnp.int32)
  live_N = assignment_N >= 0
  live_in_order_N = jnp.argsort(~live_N, stable=True)
  live_shuffled_N = jnp.argsort(jnp.where(live_N, jax.random.uniform(key, live_N.shape), 2.0))
  permuted_N = assignment_N.at[live_in_order_N].set(assignment_N[live_shuffled_N])
  return jnp.where(live_N, permuted_N, -1)


# ----------------------------------------------------------------------------- truth tables


def check_pair_readings(func: str, acts_BxM, acts_name: str, codes_BxN, pairs_Px2, neuron_P, valid_P) -> None:
  """Shapes of the inputs of a truth-table function, and (when concrete) its atom and neuron indices.

  acts_BxM: the reading neurons' activations (B, M); codes_BxN: the atoms' codes on the same samples;
  pairs_Px2: atom pairs; neuron_P: the neuron that reads each pair (None: every neuron reads every pair);
  valid_P: None or a mask over the pairs.
  """
  num_samples, num_neurons = check_rank(func, acts_name, acts_BxM, 2, "samples, neurons")
  num_atoms = check_rank(func, "codes_BxN", codes_BxN, 2, "samples, atoms")[1]
  check_axis(func, "codes_BxN", codes_BxN, 0, num_samples, f"B (the samples of {acts_name})")
  num_pairs = check_pairs(func, "pairs_Px2", pairs_Px2, num_atoms, "atoms (columns of codes_BxN)")
  if neuron_P is not None:
    check_rank(func, "neuron_P", neuron_P, 1, "pairs")
    check_axis(func, "neuron_P", neuron_P, 0, num_pairs, "P (the pairs of pairs_Px2)")
    check_index_range(func, "neuron_P", neuron_P, num_neurons, f"neurons (columns of {acts_name})")
  check_pair_mask(func, "valid_P", valid_P, num_pairs)


class TruthTables(NamedTuple):
  """Truth tables of P (pair, neuron) readings; cells in CELL_NAMES order (f00, f10, f01, f11).

  means_Px4: mean neuron activation per cell (0 for an empty cell); counts_Px4: samples per cell;
  interaction_P: f11 - f10 - f01 + f00; scale_P: the neuron's standard deviation over the data;
  testable_P: valid and every cell has >= min_count samples; class_P: OR/AND/XOR/OTHER/UNTESTABLE.
  """

  means_Px4: jax.Array
  counts_Px4: jax.Array
  interaction_P: jax.Array
  scale_P: jax.Array
  testable_P: jax.Array
  class_P: jax.Array


def cell_sums(acts_MxB: jax.Array, fires_NxB: jax.Array, pairs_Px2: jax.Array, neuron_P: jax.Array,
              chunk_size: int = 256) -> tuple[jax.Array, jax.Array]:
  """(sums_Px4, counts_Px4): Σ of neuron activations and sample counts in the four cells of each pair."""

  def chunk(a_C, b_C, m_C):
    fa_CxB, fb_CxB, y_CxB = fires_NxB[a_C], fires_NxB[b_C], acts_MxB[m_C]
    cells = (~fa_CxB & ~fb_CxB, fa_CxB & ~fb_CxB, ~fa_CxB & fb_CxB, fa_CxB & fb_CxB)
    sums_Cx4 = jnp.stack([jnp.sum(jnp.where(c, y_CxB, 0.0), axis=-1) for c in cells], axis=-1)
    counts_Cx4 = jnp.stack([jnp.sum(c, axis=-1) for c in cells], axis=-1).astype(jnp.int32)
    return sums_Cx4, counts_Cx4

  pairs_Px2 = jnp.asarray(pairs_Px2, jnp.int32)
  return map_over_pair_chunks(chunk, (pairs_Px2[:, 0], pairs_Px2[:, 1], jnp.asarray(neuron_P, jnp.int32)),
                              chunk_size)


def classify(means_Px4: jax.Array, scale_P: jax.Array, margin: float) -> jax.Array:
  """(P,) class OR / AND / XOR / OTHER of each table with δ = margin·scale (see the module docstring)."""
  num_pairs = check_rank("classify", "means_Px4", means_Px4, 2, "pairs, 4 cells")[0]
  check_axis("classify", "means_Px4", means_Px4, 1, 4, "the 4 cells (f00, f10, f01, f11)")
  check_rank("classify", "scale_P", scale_P, 1, "pairs")
  check_axis("classify", "scale_P", scale_P, 0, num_pairs, "P (the pairs of means_Px4)")
  f00, f10, f01, f11 = (means_Px4[..., i] for i in range(4))
  delta = margin * scale_P
  both_up = (f10 - f00 > delta) & (f01 - f00 > delta)
  xor = both_up & (jnp.minimum(f10, f01) - f11 > delta)
  or_gate = both_up & ~(f11 - jnp.maximum(f10, f01) > delta)
  and_gate = ((jnp.abs(f10 - f00) <= delta) & (jnp.abs(f01 - f00) <= delta)
              & (f11 - jnp.maximum(f00, jnp.maximum(f10, f01)) > delta))
  return jnp.where(xor, XOR, jnp.where(or_gate, OR, jnp.where(and_gate, AND, OTHER))).astype(jnp.int32)


def truth_tables(neuron_acts_BxM: jax.Array, codes_BxN: jax.Array, pairs_Px2: jax.Array, neuron_P: jax.Array,
                 min_count: int, margin: float = 0.5, valid_P: jax.Array | None = None,
                 chunk_size: int = 256) -> TruthTables:
  """Truth table of every pair (a, b) read through neuron neuron_P[p], and its class.

  neuron_acts_BxM: the neurons' activations on B held-out samples; codes_BxN: the SAE codes of the same
  samples (firing = code > 0). A pair is testable when valid and each of its four cells holds at least
  `min_count` samples; the others are UNTESTABLE. The scale of neuron m is its standard deviation over
  the B samples.
  """
  check_pair_readings("truth_tables", neuron_acts_BxM, "neuron_acts_BxM", codes_BxN, pairs_Px2, neuron_P, valid_P)
  acts_BxM = jnp.asarray(neuron_acts_BxM, jnp.float32)
  neuron_P = jnp.asarray(neuron_P, jnp.int32)
  num_pairs = neuron_P.shape[0]
  valid_P = jnp.ones(num_pairs, bool) if valid_P is None else jnp.asarray(valid_P, bool)
  fires_NxB = (jnp.asarray(codes_BxN) > 0).T
  sums_Px4, counts_Px4 = cell_sums(acts_BxM.T, fires_NxB, pairs_Px2, neuron_P, chunk_size)
  means_Px4 = sums_Px4 / jnp.maximum(counts_Px4, 1)
  scale_P = jnp.std(acts_BxM, axis=0)[neuron_P]
  testable_P = valid_P & jnp.all(counts_Px4 >= min_count, axis=-1)
  class_P = jnp.where(testable_P, classify(means_Px4, scale_P, margin), UNTESTABLE)
  interaction_P = means_Px4[:, 3] - means_Px4[:, 1] - means_Px4[:, 2] + means_Px4[:, 0]
  return TruthTables(means_Px4, counts_Px4, interaction_P, scale_P, testable_P, class_P)


class Prevalence(NamedTuple):
  """fraction_C: share of each class among testable pairs (classes OR, AND, XOR, OTHER; 0 when none is
  testable); count_C: valid pairs per class, UNTESTABLE included (5 entries); num_testable."""

  fraction_C: jax.Array
  count_C: jax.Array
  num_testable: jax.Array


def prevalence(class_P: jax.Array, valid_P: jax.Array) -> Prevalence:
  """Class prevalence among the testable valid pairs, e.g. OR prevalence = #OR / #testable."""
  num_pairs = check_rank("prevalence", "class_P", class_P, 1, "pairs")[0]
  check_index_range("prevalence", "class_P", class_P, len(CLASS_NAMES), "the classes OR, AND, XOR, OTHER, UNTESTABLE")
  check_pair_mask("prevalence", "valid_P", valid_P, num_pairs)
  valid_P = jnp.asarray(valid_P, bool)
  count_C = jnp.zeros(len(CLASS_NAMES), jnp.int32).at[jnp.asarray(class_P, jnp.int32)].add(
      valid_P.astype(jnp.int32))
  num_testable = jnp.sum(count_C[:UNTESTABLE])
  return Prevalence(count_C[:UNTESTABLE] / jnp.maximum(num_testable, 1), count_C, num_testable)


# `from mpcodec.metrics import truth_tables` gives this module (whose helpers callers read as `tt.X`);
# calling it runs the function `truth_tables`.
make_callable(__name__, truth_tables)
