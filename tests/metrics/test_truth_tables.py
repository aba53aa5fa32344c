"""Roommates and truth tables: numpy references, planted OR / AND / XOR neurons, nulls and bad input."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.metrics import truth_tables as tt

# Jitted once per module: a whole program compiles faster than the same ops one by one.
TRUTH_TABLES = jax.jit(tt.truth_tables, static_argnames=("chunk_size",))
ROOMMATE_PAIRS = jax.jit(tt.roommate_pairs, static_argnums=(1, 2))
NONROOMMATE_PAIRS = jax.jit(tt.random_nonroommate_pairs, static_argnums=(2, 3))
PERMUTED = jax.jit(tt.permuted_assignment)


def _rng(seed=0):
  return np.random.default_rng(seed)


def test_hard_and_soft_assignment_match_numpy():
  w_enc_MxN = _rng().normal(size=(5, 12)).astype(np.float32)
  w_enc_MxN[:, 3] = -np.abs(w_enc_MxN[:, 3])          # an atom without any positive weight
  live = np.ones(12, bool)
  live[[2, 7]] = False
  hard = np.asarray(tt.hard_assignment(w_enc_MxN, live))
  np.testing.assert_array_equal(hard, np.where(live, w_enc_MxN.argmax(0), -1))
  soft = np.asarray(tt.soft_assignment(w_enc_MxN, live))
  expected = np.zeros((12, 5))
  for i in range(12):
    positive = np.maximum(w_enc_MxN[:, i], 0)
    if live[i] and positive.sum() > 0:
      expected[i] = positive / positive.sum()
  np.testing.assert_allclose(soft, expected, rtol=1e-6, atol=1e-7)
  # The soft form agrees with the hard one: an atom's largest share is at its neuron.
  live_positive = live & (expected.sum(1) > 0)
  np.testing.assert_array_equal(soft[live_positive].argmax(1), hard[live_positive])


def _reference_pairs(assignment):
  return sorted((a, b, assignment[a]) for a, b in itertools.combinations(range(len(assignment)), 2)
                if assignment[a] >= 0 and assignment[a] == assignment[b])


@pytest.mark.parametrize("seed", [0, 1])
def test_roommate_pairs_are_every_pair_sharing_a_neuron(seed):
  assignment = _rng(seed).integers(-1, 6, size=40)
  expected = _reference_pairs(assignment)
  count = int(tt.count_roommate_pairs(assignment, 6))
  assert count == len(expected)
  pairs, neuron, valid = jax.jit(tt.roommate_pairs, static_argnums=(1, 2))(assignment, 6, count + 7)
  pairs, neuron, valid = np.asarray(pairs), np.asarray(neuron), np.asarray(valid)
  assert valid.sum() == count and not valid[count:].any()
  got = sorted((int(a), int(b), int(m)) for (a, b), m in zip(pairs[valid], neuron[valid]))
  assert got == expected
  assert np.all(pairs[valid, 0] < pairs[valid, 1])
  # Too small a max_pairs keeps the first pairs (neuron ascending) and drops the rest.
  pairs_cut, _, valid_cut = ROOMMATE_PAIRS(assignment, 6, 5)
  assert np.asarray(valid_cut).all()
  assert set(map(tuple, np.asarray(pairs_cut).tolist())) <= {(a, b) for a, b, _ in expected}


def test_no_pairs_without_roommates():
  # Neurons holding a single atom, and dead atoms, give no pair; nothing is NaN.
  for assignment in (np.array([0, 1, 2, -1, 3, 4]), np.full(6, -1)):
    pairs, neuron, valid = ROOMMATE_PAIRS(assignment, 5, 8)
    assert not np.asarray(valid).any() and int(tt.count_roommate_pairs(assignment, 5)) == 0
    acts = _rng().normal(size=(30, 5)).astype(np.float32)
    codes = _rng(1).random((30, assignment.size)).astype(np.float32)
    tables = TRUTH_TABLES(acts, codes, pairs, neuron, 1, 0.5, valid)
    assert np.all(np.asarray(tables.class_P) == tt.UNTESTABLE)
    share = tt.prevalence(tables.class_P, valid)
    assert int(share.num_testable) == 0 and np.all(np.isfinite(share.fraction_C))
    np.testing.assert_array_equal(share.fraction_C, 0.0)


def test_random_nonroommate_pairs_and_permuted_assignment():
  assignment = _rng(2).integers(-1, 8, size=60)
  pairs, neuron, valid = NONROOMMATE_PAIRS(jax.random.key(0), assignment, 500)
  pairs, neuron, valid = np.asarray(pairs), np.asarray(neuron), np.asarray(valid)
  assert valid.mean() > 0.99
  a, b = pairs[valid].T
  assert np.all(assignment[a] >= 0) and np.all(assignment[b] >= 0)
  assert np.all(assignment[a] != assignment[b])
  np.testing.assert_array_equal(neuron[valid], assignment[a])
  # One occupied neuron: every atom is a roommate of every other, so no null pair exists.
  one_neuron = np.where(np.arange(60) % 3 == 0, -1, 2)     # same shapes as above: no new compile
  _, _, none_valid = NONROOMMATE_PAIRS(jax.random.key(0), one_neuron, 500)
  assert not np.asarray(none_valid).any()

  permuted = np.asarray(jax.jit(tt.permuted_assignment)(jax.random.key(1), assignment))
  np.testing.assert_array_equal(permuted == -1, assignment == -1)
  np.testing.assert_array_equal(np.sort(permuted), np.sort(assignment))
  assert np.mean(permuted[assignment >= 0] != assignment[assignment >= 0]) > 0.5


def _reference_tables(acts, codes, pairs, neurons, min_count, margin):
  """Plain loops over pairs and samples."""
  means = np.zeros((len(pairs), 4))
  counts = np.zeros((len(pairs), 4), int)
  classes = []
  for p, ((a, b), m) in enumerate(zip(pairs, neurons)):
    for row in range(acts.shape[0]):
      cell = int(codes[row, a] > 0) + 2 * int(codes[row, b] > 0)
      cell = {0: 0, 1: 1, 2: 2, 3: 3}[cell]
      means[p, cell] += acts[row, m]
      counts[p, cell] += 1
    means[p] /= np.maximum(counts[p], 1)
    f00, f10, f01, f11 = means[p]
    delta = margin * acts[:, m].std()
    up = f10 - f00 > delta and f01 - f00 > delta
    if counts[p].min() < min_count:
      classes.append(tt.UNTESTABLE)
    elif up and min(f10, f01) - f11 > delta:
      classes.append(tt.XOR)
    elif up and not f11 - max(f10, f01) > delta:
      classes.append(tt.OR)
    elif abs(f10 - f00) <= delta and abs(f01 - f00) <= delta and f11 - max(f00, f10, f01) > delta:
      classes.append(tt.AND)
    else:
      classes.append(tt.OTHER)
  return means, counts, np.array(classes)


def test_truth_tables_match_numpy_loops():
  rng = _rng(3)
  codes = np.where(rng.random((200, 6)) < 0.4, rng.random((200, 6)), 0.0).astype(np.float32)
  acts = rng.normal(size=(200, 3)).astype(np.float32)
  acts[:, 0] = (codes[:, 0] > 0) | (codes[:, 1] > 0)       # an OR of atoms 0 and 1
  acts[:, 1] = (codes[:, 2] > 0) & (codes[:, 3] > 0)       # an AND of atoms 2 and 3
  pairs = np.array([[0, 1], [2, 3], [4, 5], [0, 5], [1, 2]])
  neurons = np.array([0, 1, 2, 0, 2])
  tables = TRUTH_TABLES(acts, codes, pairs, neurons, 20, 0.5, chunk_size=2)
  means, counts, classes = _reference_tables(acts, codes, pairs, neurons, 20, 0.5)
  np.testing.assert_allclose(tables.means_Px4, means, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(tables.counts_Px4, counts)
  np.testing.assert_array_equal(tables.class_P, classes)
  assert classes[0] == tt.OR and classes[1] == tt.AND
  np.testing.assert_allclose(tables.interaction_P, means[:, 3] - means[:, 1] - means[:, 2] + means[:, 0],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(tables.scale_P, acts.std(0)[neurons], rtol=1e-5)
  # Too few samples in a cell: untestable, counted, not classified.
  rare = TRUTH_TABLES(acts, codes, pairs, neurons, 10_000, 0.5, chunk_size=2)
  assert np.all(np.asarray(rare.class_P) == tt.UNTESTABLE) and not np.asarray(rare.testable_P).any()
  share = tt.prevalence(tables.class_P, np.ones(5, bool))
  np.testing.assert_array_equal(share.count_C, np.bincount(classes, minlength=5))
  np.testing.assert_allclose(share.fraction_C, np.bincount(classes, minlength=5)[:4] / (classes < 4).sum())


def _planted_gates(seed, num_pairs_per_gate=40, samples=3000):
  """Codes of 2·3·num_pairs_per_gate atoms; neuron j computes OR, AND or XOR of its own two atoms."""
  rng = _rng(seed)
  num_neurons = 3 * num_pairs_per_gate
  num_atoms = 2 * num_neurons
  codes = np.where(rng.random((samples, num_atoms)) < 0.3, rng.random((samples, num_atoms)), 0.0)
  fires = codes > 0
  a, b = fires[:, 0::2], fires[:, 1::2]
  gate = np.repeat([tt.OR, tt.AND, tt.XOR], num_pairs_per_gate)
  logic = np.where(gate == tt.OR, a | b, np.where(gate == tt.AND, a & b, a ^ b))
  # Graded responses and noise: the gate's output scaled by a random gain, plus Gaussian noise.
  acts = logic * rng.uniform(0.5, 1.5, size=logic.shape) + 0.1 * rng.normal(size=logic.shape)
  pairs = np.stack([np.arange(0, num_atoms, 2), np.arange(1, num_atoms, 2)], axis=-1)
  return acts.astype(np.float32), codes.astype(np.float32), pairs, np.arange(num_neurons), gate


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_or_and_xor_neurons_are_classified(seed):
  acts, codes, pairs, neurons, gate = _planted_gates(seed)
  tables = TRUTH_TABLES(acts, codes, pairs, neurons, 20)
  classes = np.asarray(tables.class_P)
  assert np.asarray(tables.testable_P).all()
  for label in (tt.OR, tt.AND, tt.XOR):
    assert np.mean(classes[gate == label] == label) >= 0.95, tt.CLASS_NAMES[label]
  # A neuron that adds its inputs is neither OR nor AND: interaction near 0, class OTHER.
  additive = (codes[:, 0::2] + codes[:, 1::2]).astype(np.float32)
  additive_tables = TRUTH_TABLES(additive, codes, pairs, neurons, 20)
  assert np.mean(np.asarray(additive_tables.class_P) == tt.OTHER) >= 0.95
  assert np.abs(np.asarray(additive_tables.interaction_P)).max() < 0.1
  interaction = np.asarray(tables.interaction_P)
  assert np.all(interaction[gate == tt.OR] < 0) and np.all(interaction[gate == tt.AND] > 0)


def test_random_neurons_give_or_prevalence_near_the_null():
  """Neurons are ORs of random atom sets and roommates are drawn independently of those sets: the
  roommates' OR prevalence is then that of both nulls (about P(a and b in the same set) = 1/9)."""
  rng = _rng(5)
  num_atoms, num_neurons, samples = 60, 10, 4000
  codes = np.where(rng.random((samples, num_atoms)) < 0.05, rng.random((samples, num_atoms)), 0.0)
  members = np.stack([rng.permutation(num_atoms) < num_atoms // 3 for _ in range(num_neurons)], axis=-1)
  acts = ((codes > 0) @ members > 0) + 0.05 * rng.normal(size=(samples, num_neurons))
  acts, codes = acts.astype(np.float32), codes.astype(np.float32)
  assignment = rng.integers(0, num_neurons, size=num_atoms)
  size = 2048                      # every pair set padded to one size: one compiled program
  assert int(tt.count_roommate_pairs(assignment, num_neurons)) <= size
  pairs, neuron, valid = ROOMMATE_PAIRS(assignment, num_neurons, size)

  def or_prevalence(pairs, neuron, valid):
    tables = TRUTH_TABLES(acts, codes, pairs, neuron, 5, 0.5, valid)
    share = tt.prevalence(tables.class_P, valid)
    return float(share.fraction_C[tt.OR]), int(share.num_testable)

  observed, n_observed = or_prevalence(pairs, neuron, valid)
  null, n_null = or_prevalence(*NONROOMMATE_PAIRS(jax.random.key(0), assignment, size))
  permuted = PERMUTED(jax.random.key(1), assignment)
  perm, n_perm = or_prevalence(*ROOMMATE_PAIRS(permuted, num_neurons, size))
  assert n_observed > 100 and n_perm > 100 and 0.05 < null < 0.2
  for other, n_other in ((null, n_null), (perm, n_perm)):
    se = np.sqrt(null * (1 - null) * (1 / n_observed + 1 / n_other))
    assert abs(observed - other) < 4 * se
  # The same test can fail: roommates wired to their neuron's OR set are ORs far above the null.
  wired = np.argmax(members + 0.1 * rng.random(members.shape), axis=1)
  assert int(tt.count_roommate_pairs(wired, num_neurons)) <= size
  wired_share, _ = or_prevalence(*ROOMMATE_PAIRS(wired, num_neurons, size))
  assert wired_share > null + 0.5


def test_truth_tables_vmap_over_seeds():
  acts, codes, pairs, neurons, _ = _planted_gates(0, num_pairs_per_gate=4, samples=400)
  batched = jax.jit(jax.vmap(lambda a, c: tt.truth_tables(a, c, pairs, neurons, 5).class_P))(
      jnp.stack([acts, acts[::-1]]), jnp.stack([codes, codes[::-1]]))
  single = TRUTH_TABLES(acts, codes, pairs, neurons, 5).class_P
  np.testing.assert_array_equal(batched[0], single)
  np.testing.assert_array_equal(batched[1], single)      # row order does not matter
