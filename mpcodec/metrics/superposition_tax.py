"""The superposition tax: reconstruction error through M synthetic neurons over a monosemantic baseline.

  tax(M) = FVU(x, x̂ through M compressing neurons) / FVU(x, x̂ of the monosemantic baseline with M),

where the monosemantic baseline is the SAE reconstruction that keeps only the M atoms that explain the
most variance and replaces every other atom by its mean code (the best constant: the compressing
neurons' own decoder bias can do the same for the atoms they drop):

  x̂_M = b_dec + Σ_{n kept} z_n d_n + Σ_{n dropped} mean(z_n) d_n.

Atoms are ranked by one of two scores (ties toward the lower index):
  "contribution": the variance of the atom's contribution z_n d_n over the data, Var(z_n)·||d_n||²;
  "explained": the drop in squared error when the atom's centred contribution alone is added to the
    mean prediction, Σ_b [2 (z_bn - z̄_n) <x_b - x̄, d_n> - (z_bn - z̄_n)² ||d_n||²].
A tax of 1 means M superposed neurons lose nothing against M monosemantic ones; compressing neurons
handed the exact monosemantic solution (the neurons are the atoms, M >= live atoms) have a tax of exactly 1.

Codes, decoder rows, b_dec and x must be in the same units (a folded SAE, `fold_input_scale`, acts on
raw activations). All functions are pure and jittable.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from mpcodec.core.errors import DataError
from mpcodec.metrics.callable_module import make_callable
from mpcodec.metrics.codec import sum_squared_error
from mpcodec.metrics.shapes import check_axis, check_rank

Ranking = Literal["contribution", "explained"]


def _check_atoms(func: str, codes_BxN, decoder_NxD, x_BxD=None, b_dec_D=None) -> None:
  """Codes (B, N), decoder rows (N, D), and where given x (B, D) and b_dec (D,)."""
  num_samples, num_atoms = check_rank(func, "codes_BxN", codes_BxN, 2, "samples, atoms")
  width = check_rank(func, "decoder_NxD", decoder_NxD, 2, "atoms, features")[1]
  check_axis(func, "decoder_NxD", decoder_NxD, 0, num_atoms, "N (the atoms of codes_BxN)")
  if x_BxD is not None:
    check_rank(func, "x_BxD", x_BxD, 2, "samples, features")
    check_axis(func, "x_BxD", x_BxD, 0, num_samples, "B (the samples of codes_BxN)")
    check_axis(func, "x_BxD", x_BxD, 1, width, "D (the features of decoder_NxD)")
  if b_dec_D is not None:
    check_rank(func, "b_dec_D", b_dec_D, 1, "features")
    check_axis(func, "b_dec_D", b_dec_D, 0, width, "D (the features of decoder_NxD)")


def atom_scores(codes_BxN: jax.Array, decoder_NxD: jax.Array, x_BxD: jax.Array | None = None,
                ranking: Ranking = "contribution") -> jax.Array:
  """(N,) variance score of each atom (see the module docstring); "explained" needs x."""
  _check_atoms("atom_scores", codes_BxN, decoder_NxD, x_BxD)
  codes_BxN = jnp.asarray(codes_BxN, jnp.float32)
  decoder_NxD = jnp.asarray(decoder_NxD, jnp.float32)
  centered_BxN = codes_BxN - jnp.mean(codes_BxN, axis=0)
  sq_norm_N = jnp.sum(jnp.square(decoder_NxD), axis=-1)
  spread_N = jnp.sum(jnp.square(centered_BxN), axis=0) * sq_norm_N
  if ranking == "contribution":
    return spread_N / codes_BxN.shape[0]
  if x_BxD is None:
    raise ValueError('ranking="explained" needs x_BxD')
  x_centered_BxD = jnp.asarray(x_BxD, jnp.float32) - jnp.mean(jnp.asarray(x_BxD, jnp.float32), axis=0)
  # Σ_b z̄_n <x_b - x̄, d_n> = 0, so the cross term needs the raw codes only.
  cross_N = jnp.sum((codes_BxN.T @ x_centered_BxD) * decoder_NxD, axis=-1)
  return 2.0 * cross_N - spread_N


def atom_ranks(scores_N: jax.Array) -> jax.Array:
  """(N,) rank of each atom, 0 = highest score; ties go to the lower index."""
  check_rank("atom_ranks", "scores_N", scores_N, 1, "atoms")
  order_N = jnp.argsort(-scores_N, stable=True)
  return jnp.zeros_like(order_N).at[order_N].set(jnp.arange(order_N.shape[0]))


def monosemantic_baseline(codes_BxN: jax.Array, decoder_NxD: jax.Array, b_dec_D: jax.Array,
                          x_BxD: jax.Array | None, num_kept: int | jax.Array,
                          ranking: Ranking = "contribution") -> jax.Array:
  """(B, D) x̂_M: the SAE reconstruction with the num_kept best atoms, the others at their mean code.

  Dense (one (B, N)·(N, D) product); `monosemantic_fvu_sweep` is the sparse path for many M at scale.
  `num_kept` may be traced (rank mask), so a sweep of M can be vmapped. x is used by ranking="explained".
  """
  _check_atoms("monosemantic_baseline", codes_BxN, decoder_NxD, x_BxD, b_dec_D)
  codes_BxN = jnp.asarray(codes_BxN, jnp.float32)
  decoder_NxD = jnp.asarray(decoder_NxD, jnp.float32)
  kept_N = atom_ranks(atom_scores(codes_BxN, decoder_NxD, x_BxD, ranking)) < num_kept
  filled_BxN = jnp.where(kept_N, codes_BxN, jnp.mean(codes_BxN, axis=0))
  return filled_BxN @ decoder_NxD + jnp.asarray(b_dec_D, jnp.float32)


def monosemantic_fvu_sweep(x_BxD: jax.Array, codes_BxN: jax.Array, decoder_NxD: jax.Array,
                           b_dec_D: jax.Array, num_kept_J: jax.Array, max_active: int,
                           ranking: Ranking = "contribution", row_chunk: int = 512) -> jax.Array:
  """(J,) FVU of x̂_M for every M in num_kept_J, from each row's `max_active` largest codes only.

  With at most max_active nonzero codes per row (the SAE's k for TopK; rows with more keep their
  largest), x̂_M(b) = b_dec + Σ_{n dropped} z̄_n d_n + Σ_{n active in b, kept} z_bn d_n: only the active
  decoder rows are gathered, B·max_active·D work per M instead of the dense B·N·D.
  """
  _check_atoms("monosemantic_fvu_sweep", codes_BxN, decoder_NxD, x_BxD, b_dec_D)
  check_rank("monosemantic_fvu_sweep", "num_kept_J", num_kept_J, 1, "widths M to sweep")
  x_BxD = jnp.asarray(x_BxD, jnp.float32)
  codes_BxN = jnp.asarray(codes_BxN, jnp.float32)
  decoder_NxD = jnp.asarray(decoder_NxD, jnp.float32)
  num_kept_J = jnp.asarray(num_kept_J)
  rank_N = atom_ranks(atom_scores(codes_BxN, decoder_NxD, x_BxD, ranking))
  mean_contribution_ND = jnp.mean(codes_BxN, axis=0)[:, None] * decoder_NxD
  # Σ_{rank >= M} z̄_n d_n for every M: a masked sum per M (J·N·D, small next to the rows).
  dropped_JxD = jnp.einsum("jn,nd->jd", (rank_N[None, :] >= num_kept_J[:, None]).astype(jnp.float32),
                           mean_contribution_ND)
  base_JxD = jnp.asarray(b_dec_D, jnp.float32) + dropped_JxD
  num_rows = x_BxD.shape[0]
  row_chunk = max(1, min(row_chunk, num_rows))
  num_chunks = -(-num_rows // row_chunk)
  pad = num_chunks * row_chunk - num_rows
  row_valid_B = jnp.ones(num_rows, bool)   # padded rows (cut below) are False
  values_BxK, atoms_BxK = jax.lax.top_k(codes_BxN, max_active)

  def chunk(args):
    x_CxD, values_CxK, atoms_CxK, valid_C = args
    rows_CxKxD = values_CxK[..., None] * decoder_NxD[atoms_CxK]
    kept_JxCxK = rank_N[atoms_CxK][None] < num_kept_J[:, None, None]
    x_hat_JxCxD = base_JxD[:, None, :] + jnp.einsum("jck,ckd->jcd", kept_JxCxK.astype(jnp.float32),
                                                     rows_CxKxD)
    error_JxC = jnp.sum(jnp.square(x_CxD[None] - x_hat_JxCxD), axis=-1)
    return jnp.sum(jnp.where(valid_C[None], error_JxC, 0.0), axis=-1)

  def cut(a):
    a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
    return a.reshape((num_chunks, row_chunk) + a.shape[1:])

  errors_CxJ = jax.lax.map(chunk, (cut(x_BxD), cut(values_BxK), cut(atoms_BxK), cut(row_valid_B)))
  variance = jnp.sum(jnp.square(x_BxD - jnp.mean(x_BxD, axis=0)))
  return jnp.sum(errors_CxJ, axis=0) / variance


class SuperpositionTax(NamedTuple):
  """tax = fvu_compressed / fvu_baseline where defined (fvu_baseline > 0), else 0 with defined False."""

  tax: jax.Array
  fvu_compressed: jax.Array
  fvu_baseline: jax.Array
  defined: jax.Array

def tax_from_fvu(fvu_compressed: jax.Array, fvu_baseline: jax.Array) -> SuperpositionTax:
  """The tax from two FVUs (elementwise, any equal shapes); undefined (a perfect baseline) is recorded."""
  if jnp.shape(fvu_compressed) != jnp.shape(fvu_baseline):
    raise DataError(f"tax_from_fvu: fvu_baseline needs the shape {jnp.shape(fvu_compressed)} of fvu_compressed, "
                    f"got shape {jnp.shape(fvu_baseline)}")
  fvu_compressed, fvu_baseline = jnp.asarray(fvu_compressed), jnp.asarray(fvu_baseline)
  defined = fvu_baseline > 0
  tax = jnp.where(defined, fvu_compressed / jnp.where(defined, fvu_baseline, 1.0), 0.0)
  return SuperpositionTax(tax, fvu_compressed, fvu_baseline, defined)


def superposition_tax(x_BxD: jax.Array, x_hat_compressed_BxD: jax.Array, x_hat_baseline_BxD: jax.Array
                      ) -> SuperpositionTax:
  """FVU(x, x̂_compressed) / FVU(x, x̂_baseline) (the same x, so the ratio of the summed squared errors)."""
  shape = check_rank("superposition_tax", "x_BxD", x_BxD, 2, "samples, features")
  for name, x_hat_BxD in (("x_hat_compressed_BxD", x_hat_compressed_BxD), ("x_hat_baseline_BxD", x_hat_baseline_BxD)):
    check_rank("superposition_tax", name, x_hat_BxD, 2, "samples, features")
    for axis in (0, 1):
      check_axis("superposition_tax", name, x_hat_BxD, axis, shape[axis], f"{'BD'[axis]} (as in x_BxD)")
  x_BxD = jnp.asarray(x_BxD, jnp.float32)
  variance = jnp.sum(jnp.square(x_BxD - jnp.mean(x_BxD, axis=0)))
  variance = jnp.where(variance > 0, variance, 1.0)
  return tax_from_fvu(sum_squared_error(x_BxD, x_hat_compressed_BxD) / variance,
                      sum_squared_error(x_BxD, x_hat_baseline_BxD) / variance)


# `from mpcodec.metrics import superposition_tax` gives this module; calling it runs `superposition_tax`.
make_callable(__name__, superposition_tax)
