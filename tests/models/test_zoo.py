"""Tests for the architecture zoo: names, shapes, layer order, parameter counts and padding masks.

Shapes and parameter counts come from jax.eval_shape (no compile), so every architecture is checked;
numeric tests run one representative per family with random parameters under one jit each.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.models.cnn import Conv3x3, conv3x3_same
from mpcodec.models import transformer, zoo

NUM_CLASSES = 10
IMAGES = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
VOCAB, MAX_LENGTH = 50, 12


def _param_count(params) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def _abstract_params(model, inputs):
  return jax.eval_shape(model.init, jax.random.key(0), inputs)


def _random_params(model, inputs, seed=0):
  """Random concrete parameters of the right shapes (cheaper than compiling Flax's initializers)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda leaf: jnp.asarray(0.2 * rng.normal(size=leaf.shape), leaf.dtype),
      _abstract_params(model, inputs))


def test_architecture_names():
  assert list(zoo.ARCHITECTURES) == [
      "mlp_128_64", "mlp_64x4_32", "mlp_32x10", "mlp_24x15", "mlp_32x4", "mlp_128x2_64x2",
      "mlp_256x2_128x2", "mlp_512x2_256x2", "cnn_32_64", "cnn_32_64_128", "cnn_32_64_128_256",
      "transformer_d128_h4_l2", "transformer_d128_h4_l4", "transformer_d128_h4_l6",
      "transformer_d64_h4_l4", "transformer_d256_h8_l4"]
  assert zoo.ARCHITECTURES["mlp_64x4_32"].hidden_widths == (64, 64, 64, 64, 32)
  assert zoo.ARCHITECTURES["transformer_d256_h8_l4"] == zoo.TransformerSpec(256, 8, 4)


def test_bad_requests_name_the_problem():
  with pytest.raises(ValueError,
                     match="unknown architecture 'mlp_huge'.*mlp_128_64.*transformer_d256_h8_l4"):
    zoo.build_model("mlp_huge", NUM_CLASSES, "image")
  with pytest.raises(ValueError, match="reads images only"):
    zoo.build_model("cnn_32_64", NUM_CLASSES, "text", vocab_size=VOCAB, max_length=MAX_LENGTH)
  with pytest.raises(ValueError, match="vocab_size"):
    zoo.build_model("mlp_128_64", NUM_CLASSES, "text")
  with pytest.raises(ValueError, match="max_length"):
    zoo.build_model("transformer_d64_h4_l4", NUM_CLASSES, "text", vocab_size=VOCAB)
  with pytest.raises(ValueError, match="input_kind"):
    zoo.build_model("mlp_128_64", NUM_CLASSES, "audio")


@pytest.mark.parametrize("arch", list(zoo.ARCHITECTURES))
def test_image_shapes_and_layer_order(arch):
  spec = zoo.ARCHITECTURES[arch]
  model = zoo.build_model(arch, NUM_CLASSES, "image")
  params = _abstract_params(model, IMAGES)
  logits, acts = jax.eval_shape(model.apply, params, IMAGES)
  assert logits.shape == (3, NUM_CLASSES)
  # eval_shape, like jit, returns the dict with sorted keys; depth_sorted restores depth order.
  shapes = {name: acts[name].shape for name in zoo.depth_sorted(acts)}
  if isinstance(spec, zoo.MLPSpec):
    assert shapes == {f"hidden_{i}": (3, w) for i, w in enumerate(spec.hidden_widths)}
    assert list(shapes) == [f"hidden_{i}" for i in range(len(spec.hidden_widths))]
  elif isinstance(spec, zoo.CNNSpec):
    sizes = [14, 7, 3, 1]  # floor pooling of 28
    assert list(shapes) == [f"conv_{i}" for i in range(len(spec.channels))]
    assert shapes == {f"conv_{i}": (3, sizes[i], sizes[i], c) for i, c in enumerate(spec.channels)}
  else:
    expected = []
    for i in range(spec.num_layers):
      expected += [(f"block_{i}/attention", (3, spec.num_heads, 16, 16)),
                   (f"block_{i}", (3, 16, spec.d_model))]
    assert list(shapes.items()) == expected
  for name, activation in acts.items():
    layout = zoo.layer_layout(name, activation)
    assert layout == ("attention" if "attention" in name else
                      {2: "dense", 3: "tokens", 4: "conv"}[activation.ndim])


def _transformer_param_count(d_model, num_layers, input_params, num_positions):
  per_block = 2 * 2 * d_model + 3 * (d_model * d_model + d_model) + (d_model * d_model + d_model)
  per_block += (d_model * 4 * d_model + 4 * d_model) + (4 * d_model * d_model + d_model)
  return (input_params + num_positions * d_model + num_layers * per_block + 2 * d_model
          + d_model * NUM_CLASSES + NUM_CLASSES)


def test_param_counts():
  def count(arch, input_kind, inputs, **kwargs):
    model = zoo.build_model(arch, NUM_CLASSES, input_kind, **kwargs)
    return _param_count(_abstract_params(model, inputs))

  assert count("mlp_128_64", "image", IMAGES) == (
      (784 * 128 + 128) + (128 * 64 + 64) + (64 * 10 + 10))
  # Two conv stages leave 7x7x64 for the head.
  assert count("cnn_32_64", "image", IMAGES) == (
      (9 * 32 + 32) + (9 * 32 * 64 + 64) + (7 * 7 * 64 * 10 + 10))
  assert count("transformer_d128_h4_l2", "image", IMAGES) == _transformer_param_count(
      128, 2, 49 * 128 + 128, 16)

  tokens = jax.ShapeDtypeStruct((3, MAX_LENGTH), jnp.int32)
  text = dict(vocab_size=VOCAB, max_length=MAX_LENGTH)
  assert count("mlp_128_64", "text", tokens, embed_dim=16, **text) == (
      VOCAB * 16 + (16 * 128 + 128) + (128 * 64 + 64) + (64 * 10 + 10))
  assert count("transformer_d64_h4_l4", "text", tokens, **text) == _transformer_param_count(
      64, 4, VOCAB * 64, MAX_LENGTH)


def test_image_patches_are_7x7_blocks():
  images = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
  patches = np.asarray(transformer.image_patches(jnp.asarray(images)))
  assert patches.shape == (2, 16, 49)
  for row in range(4):
    for col in range(4):
      block = images[:, 7 * row:7 * row + 7, 7 * col:7 * col + 7, 0]
      np.testing.assert_array_equal(patches[:, row * 4 + col], block.reshape(2, 49))


def _token_ids(rng, lengths, width):
  ids = np.zeros((len(lengths), width), np.int32)
  for i, length in enumerate(lengths):
    ids[i, :length] = rng.integers(1, VOCAB, size=length)
  return ids


@pytest.mark.parametrize("arch", ["transformer_d128_h4_l2", "mlp_32x4"])
def test_padding_does_not_change_text_output(arch):
  model = zoo.build_model(arch, NUM_CLASSES, "text", vocab_size=VOCAB, max_length=MAX_LENGTH,
                          embed_dim=16)
  short = _token_ids(np.random.default_rng(1), [5, 2, 7], 7)
  padded = np.concatenate([short, np.zeros((3, MAX_LENGTH - 7), np.int32)], axis=1)
  params = _random_params(model, jnp.asarray(padded))
  apply = jax.jit(model.apply)
  logits_short, acts_short = apply(params, short)
  logits_padded, acts_padded = apply(params, padded)
  np.testing.assert_allclose(logits_padded, logits_short, rtol=1e-5, atol=1e-5)
  assert np.all(np.isfinite(logits_padded))
  # Different inputs must give different outputs, or the comparison above proves nothing.
  assert not np.allclose(logits_short[0], logits_short[1], atol=1e-3)
  if arch.startswith("transformer"):
    attention = np.asarray(acts_padded["block_0/attention"])
    key_is_padding = padded == 0
    np.testing.assert_array_equal(attention * key_is_padding[:, None, None, :], 0.0)
    np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=1e-5)
    # Real tokens' residual streams do not depend on the padding appended after them.
    real = short != 0
    np.testing.assert_allclose(np.asarray(acts_padded["block_1"])[:, :7][real],
                               np.asarray(acts_short["block_1"])[real], rtol=1e-4, atol=1e-4)
  else:
    assert list(acts_padded) == ["hidden_0", "hidden_1", "hidden_2", "hidden_3"]


def test_cnn_forward_on_images():
  model = zoo.build_model("cnn_32_64_128_256", NUM_CLASSES, "image")
  images = jnp.asarray(np.random.default_rng(2).normal(size=(3, 28, 28)).astype(np.float32))
  params = _random_params(model, images)
  logits, acts = jax.jit(model.apply)(params, images)
  assert logits.shape == (3, NUM_CLASSES) and np.all(np.isfinite(logits))
  assert acts["conv_3"].shape == (3, 1, 1, 256)
  # Recorded after ReLU and pooling.
  assert all(float(jnp.min(a)) >= 0.0 for a in acts.values())


def test_depth_sorted():
  assert zoo.depth_sorted(["hidden_10", "hidden_2", "hidden_0", "hidden_1"]) == [
      "hidden_0", "hidden_1", "hidden_2", "hidden_10"]
  names = ["block_1", "block_0", "block_10/attention", "block_1/attention", "block_0/attention"]
  assert zoo.depth_sorted(names) == [
      "block_0/attention", "block_0", "block_1/attention", "block_1", "block_10/attention"]


def test_attention_naming_rule():
  assert zoo.is_attention_layer("block_3/attention")
  assert not zoo.is_attention_layer("block_3")
  assert zoo.layer_layout("hidden_0", jax.ShapeDtypeStruct((4, 8), jnp.float32)) == "dense"
  with pytest.raises(ValueError, match="no layout"):
    zoo.layer_layout("odd", jax.ShapeDtypeStruct((4,), jnp.float32))


def test_conv3x3_matches_lax_convolution_and_numpy():
  rng = np.random.default_rng(5)
  images = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
  kernel = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
  ours = np.asarray(conv3x3_same(jnp.asarray(images), jnp.asarray(kernel)))
  reference = jax.lax.conv_general_dilated(
      jnp.asarray(images), jnp.asarray(kernel), window_strides=(1, 1), padding="SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)
  np.testing.assert_allclose(ours, np.asarray(reference), rtol=1e-5, atol=1e-5)
  # Independent numpy loop: out[n, y, x, f] = sum over the 3x3 window (zero outside) of in * kernel.
  padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
  expected = np.zeros((2, 6, 5, 4), np.float64)
  for y in range(6):
    for x in range(5):
      window = padded[:, y:y + 3, x:x + 3, :].astype(np.float64)
      expected[:, y, x, :] = np.einsum("nijc,ijcf->nf", window, kernel.astype(np.float64))
  np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_cnn_parameters_match_flax_conv():
  """Conv3x3 keeps flax.linen.Conv's parameter names and shapes, and computes the same function."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  images = jnp.asarray(np.random.default_rng(6).normal(size=(2, 8, 8, 2)).astype(np.float32))
  ours = Conv3x3(5)
  theirs = nn.Conv(5, kernel_size=(3, 3), padding="SAME")
  params = ours.init(jax.random.PRNGKey(0), images)
  assert jax.tree.map(np.shape, params) == jax.tree.map(
      np.shape, theirs.init(jax.random.PRNGKey(0), images))
  params = jax.tree.map(lambda a: a + 0.1, params)   # a nonzero bias too
  np.testing.assert_allclose(np.asarray(ours.apply(params, images)),
                             np.asarray(theirs.apply(params, images)), rtol=1e-4, atol=1e-4)
