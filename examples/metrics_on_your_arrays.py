"""Metrics of mpcodec.metrics on plain numpy arrays: no training, no checkpoint (a few seconds on a CPU).

  python examples/metrics_on_your_arrays.py
"""

import numpy as np

from mpcodec.metrics import (effective_rank, mean_pairwise_angle_degrees, participation_ratio, truth_tables,
                             weight_entropy, weight_l2_norm)

np.set_printoptions(precision=2, suppress=True)
rng = np.random.default_rng(0)

# Activations: 1,000 samples of 64 neurons that vary along 5 directions only (plus a little noise).
acts_NxD = rng.normal(size=(1000, 5)) @ rng.normal(size=(5, 64)) + 0.01 * rng.normal(size=(1000, 64))
acts_NxD = acts_NxD.astype(np.float32)
print(f"participation ratio {float(participation_ratio(acts_NxD)):.2f}, "
      f"effective rank {float(effective_rank(acts_NxD)):.2f} (64 neurons, 5 directions)")

# Weights into 10 neurons from 3,072 inputs; neuron 0 reads 10 inputs only, neuron 1 twice as strongly.
w_in_DxH = rng.normal(size=(3072, 10)).astype(np.float32)
w_in_DxH[10:, 0] = 0.0
w_in_DxH[:, 1] *= 2.0
print(f"weight entropy (nats; log 3072 = {np.log(3072):.2f} at most):", np.asarray(weight_entropy(w_in_DxH)))
print("weight L2 norm:", np.asarray(weight_l2_norm(w_in_DxH)))
print(f"mean pairwise angle {float(mean_pairwise_angle_degrees(w_in_DxH)):.1f} degrees")

# Truth tables: binary codes of two atoms a and b, one neuron computing a OR b, another a XOR b.
codes_BxN = (rng.random((4000, 2)) < 0.3).astype(np.float32)
a, b = codes_BxN[:, 0], codes_BxN[:, 1]
neurons_BxM = np.stack([np.maximum(a, b), np.abs(a - b)], axis=1) + 0.05 * rng.normal(size=(4000, 2))
tables = truth_tables(neurons_BxM.astype(np.float32), codes_BxN, pairs_Px2=np.array([[0, 1], [0, 1]]),
                      neuron_P=np.array([0, 1]), min_count=20)
for p, neuron in enumerate(("a OR b", "a XOR b")):
  print(f"neuron {neuron}: (f00, f10, f01, f11) = {np.asarray(tables.means_Px4[p])} -> "
        f"{truth_tables.CLASS_NAMES[int(tables.class_P[p])]}")
