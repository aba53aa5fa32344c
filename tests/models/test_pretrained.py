"""Weight loading through a rule table: placement and transforms, and one error naming every problem."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.core.errors import MpcodecError
from mpcodec.models import bert, minilm, pretrained
from mpcodec.models.pretrained import LINEAR_TO_KERNEL, WeightRule


class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, ids):
    h = nn.Embed(10, 4, name="embed")(ids)
    for i in range(2):
      h = nn.Dense(3 if i == 1 else 4, name=f"layer_{i}")(h)
    return h


RULES = (
    WeightRule(r"emb\.weight", "embed/embedding"),
    WeightRule(r"layers\.(\d+)\.weight", r"layer_\1/kernel", LINEAR_TO_KERNEL),
    WeightRule(r"layers\.(\d+)\.bias", r"layer_\1/bias"),
)


def _expected():
  return pretrained.expected_shapes(lambda: _Tiny().init(jax.random.PRNGKey(0), jnp.zeros((1,), jnp.int32)))[
      "params"]


def _tensors(rng):
  return {"emb.weight": rng.standard_normal((10, 4)).astype(np.float32),
          "layers.0.weight": rng.standard_normal((4, 4)).astype(np.float32),
          "layers.0.bias": rng.standard_normal(4).astype(np.float32),
          "layers.1.weight": rng.standard_normal((3, 4)).astype(np.float32),   # PyTorch (out, in)
          "layers.1.bias": rng.standard_normal(3).astype(np.float32),
          "buffer.ids": np.arange(5)}


def test_rules_place_and_transpose_every_tensor():
  tensors = _tensors(np.random.default_rng(0))
  params = pretrained.convert(tensors, RULES, _expected(), ignore=(r"buffer\..*",))
  np.testing.assert_array_equal(params["layer_1"]["kernel"], tensors["layers.1.weight"].T)
  np.testing.assert_array_equal(params["embed"]["embedding"], tensors["emb.weight"])
  # The converted tree runs in the module and equals the PyTorch formula x Wᵀ + b.
  ids = jnp.asarray([3, 7])
  out = _Tiny().apply({"params": params}, ids)
  h = tensors["emb.weight"][[3, 7]]
  for i in range(2):
    h = h @ tensors[f"layers.{i}.weight"].T + tensors[f"layers.{i}.bias"]
  np.testing.assert_allclose(np.asarray(out), h, rtol=1e-6, atol=1e-6)


def test_every_problem_is_collected_into_one_error():
  tensors = _tensors(np.random.default_rng(0))
  del tensors["layers.0.bias"]
  tensors["layers.1.weight"] = tensors["layers.1.weight"][:, :2]
  tensors["extra.weight"] = np.zeros(3, np.float32)
  tensors["emb.weight"] = tensors["emb.weight"].astype(np.int64)
  with pytest.raises(pretrained.PretrainedWeightsError) as info:
    pretrained.convert(tensors, RULES, _expected(), ignore=(r"buffer\..*",), source="tiny.safetensors")
  message = str(info.value)
  assert isinstance(info.value, MpcodecError)
  assert message.startswith("tiny.safetensors: 4 problems")
  assert "missing tensor layers.0.bias for parameter layer_0/bias (4,)" in message
  assert ("tensor layers.1.weight has shape (3, 2) (transpose: (2, 3)); parameter layer_1/kernel needs (4, 3)"
          in message)
  assert "unexpected tensor extra.weight (3,)" in message
  assert "tensor emb.weight has dtype int64" in message
  assert "buffer.ids" not in message


def test_duplicate_and_unknown_targets_are_reported():
  tensors = _tensors(np.random.default_rng(0))
  rules = RULES + (WeightRule(r"other\.bias", "layer_0/bias"), WeightRule(r"ghost\.weight", "layer_9/kernel"))
  tensors.update({"other.bias": np.zeros(4, np.float32), "ghost.weight": np.zeros(2, np.float32)})
  with pytest.raises(pretrained.PretrainedWeightsError) as info:
    pretrained.convert(tensors, rules, _expected(), ignore=(r"buffer\..*",))
  assert "tensors layers.0.bias and other.bias both map to layer_0/bias" in str(info.value)
  assert "tensor ghost.weight maps to layer_9/kernel, which the model does not have" in str(info.value)


def test_bert_rules_fill_every_parameter_of_a_small_bert():
  """Hugging Face names of a 2-block BERT, generated from the expected shapes, fill the whole tree."""
  config = bert.BertConfig(vocab_size=11, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=12,
                           max_positions=6)
  module = bert.BertEncoder(config)
  ids = jnp.zeros((1, 3), jnp.int32)
  expected = pretrained.expected_shapes(lambda: module.init(jax.random.PRNGKey(0), ids, jnp.ones_like(ids)))[
      "params"]
  rng = np.random.default_rng(1)
  tensors = {"embeddings.position_ids": np.arange(6)[None],
             "pooler.dense.weight": np.zeros((8, 8), np.float32)}
  flat = jax.tree_util.tree_flatten_with_path(expected)[0]
  for path, leaf in flat:
    target = "/".join(p.key for p in path)
    names = [pretrained.source_name_for(rule, target) for rule in minilm.BERT_RULES]
    names = [n for n in names if n]
    assert len(names) == 1, f"{target}: rules give {names}"
    shape = leaf.shape[::-1] if target.endswith("/kernel") else leaf.shape
    tensors[names[0]] = rng.standard_normal(shape).astype(np.float32)
  params = pretrained.convert(tensors, minilm.BERT_RULES, expected, ignore=minilm.BERT_IGNORED)
  np.testing.assert_array_equal(params["block_1"]["ffn_in"]["kernel"],
                                tensors["encoder.layer.1.intermediate.dense.weight"].T)
  np.testing.assert_array_equal(params["embeddings"]["norm"]["scale"], tensors["embeddings.LayerNorm.weight"])
  assert len(jax.tree.leaves(params)) == len(flat)
