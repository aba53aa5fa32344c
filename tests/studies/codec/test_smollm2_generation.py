"""The causal LM's splice and generation stages: planted checks on the tiny Llama GGUF (a zero vector steers
nothing; a target token's unembedding raises its mass; the topic's target tokens are the planted ones) and
the refusal of both stages on MiniLM (no next-token loss) in one line naming the stage. The smoke launch's
splice and generation outputs are checked in test_smollm2_codec.py (one launch for both files' checks)."""

import numpy as np
import pytest

from configs import codec_minilm
from mpcodec.core import configuration
from mpcodec.core.errors import ActivationError, ConfigError
from mpcodec.models import smollm2
from mpcodec.studies.codec import config as codec_config
from mpcodec.studies.codec import generation_stage
from tests.models.test_smollm2 import TINY, _tiny_gguf

LAST_RESIDUAL = f"block_{TINY['layers'] - 1}/residual"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  return smollm2.load(_tiny_gguf(tmp_path_factory.mktemp("tiny") / "model")[0])


def _batches(model):
  return generation_stage._batches(model, ["the cat sat", "a b c d e", "hello there"], 24, 2)


def test_a_zero_vector_changes_nothing(tiny_model):
  targets = [int(t) for t in tiny_model.token_ids(["the"], 8)[0][0]]
  found = generation_stage.measure(tiny_model, "block_1/ffn_hidden", _batches(tiny_model),
                                   np.zeros((1, TINY["ffn"])), [1.0, 5.0], targets, snr=True)
  np.testing.assert_allclose(found["kl"], 0.0, atol=1e-6)
  np.testing.assert_allclose(found["p_target_steered"] / found["p_target_clean"], 1.0, rtol=1e-5)
  assert np.all(found["p_target_clean"] > 0)


def test_a_target_tokens_unembedding_raises_its_mass(tiny_model):
  # The last residual feeds the final RMSNorm and the tied embedding: adding E[t] raises logit t.
  target = 200
  direction = np.asarray(tiny_model.params["embed"]["embedding"])[target][None]
  found = generation_stage.measure(tiny_model, LAST_RESIDUAL, _batches(tiny_model),
                                   np.concatenate([direction, -direction]), [0.5, 2.0], [target])
  assert found["p_target_steered"][0, 0] > 1.5 * found["p_target_clean"][0, 0]
  assert found["p_target_steered"][0, 1] > found["p_target_steered"][0, 0]
  assert found["p_target_steered"][1, 1] < found["p_target_clean"][1, 1]
  assert np.all(found["kl"] > 0)


def test_steered_continuations_with_a_zero_vector_are_the_unsteered_ones(tiny_model):
  prompts = tiny_model.token_ids(["the cat", "hello"], 8)[0]
  ppl, new = generation_stage.continuations(tiny_model, "block_1/ffn_hidden", prompts,
                                            np.zeros((1, TINY["ffn"])), [1.0], 6)
  plain, _ = tiny_model.generate(tiny_model.params, tiny_model.pad(prompts), 6)
  np.testing.assert_array_equal(new[0][0], plain)
  assert np.isfinite(ppl).all() and (ppl >= 1).all()


def test_a_pass_started_at_a_block_equals_the_full_pass(tiny_model):
  """`start=(i, residual entering block i)` skips the blocks before i and gives the same logits, steered too;
  a start state of the wrong shape is refused."""
  tokens = tiny_model.pad(tiny_model.token_ids(["the cat sat", "hello"], 8)[0])
  ids, mask = tokens.input_ids_BxT, tokens.attention_mask_BxT
  vector = np.random.default_rng(0).standard_normal(TINY["ffn"]).astype(np.float32)
  full, acts = tiny_model.apply(tiny_model.params, ids, mask, capture=["block_0/residual"],
                                add={"block_1/ffn_hidden": vector})
  started, _ = tiny_model.apply(tiny_model.params, ids, mask, add={"block_1/ffn_hidden": vector},
                                start=(1, acts["block_0/residual"]))
  np.testing.assert_allclose(np.asarray(started), np.asarray(full), rtol=1e-5, atol=1e-5)
  unsteered, _ = tiny_model.apply(tiny_model.params, ids, mask)
  assert np.abs(np.asarray(unsteered) - np.asarray(full)).max() > 1e-3   # the vector does change them
  with pytest.raises(ActivationError, match="start hidden state"):
    tiny_model.apply(tiny_model.params, ids, mask, start=(1, np.zeros((1, 2, 3))))


def test_one_steering_per_row_equals_each_steering_alone(tiny_model):
  """generate with a (B, dim) vector steers each prompt by its own row, as B separate calls would; the
  batched continuations equal the vectors and strengths continued one at a time."""
  prompts = tiny_model.token_ids(["the cat", "hello there"], 8)[0]
  tokens = tiny_model.pad(prompts)
  rows = np.random.default_rng(2).standard_normal((2, TINY["ffn"])).astype(np.float32) * 4
  both, _ = tiny_model.generate(tiny_model.params, tokens, 5, add={"block_1/ffn_hidden": rows})
  for r in range(2):
    alone, _ = tiny_model.generate(tiny_model.params, tokens, 5, add={"block_1/ffn_hidden": rows[r]})
    assert both[r].tolist() == alone[r].tolist()
  assert both[0].tolist() != tiny_model.generate(tiny_model.params, tokens, 5)[0][0].tolist() or \
         both[1].tolist() != tiny_model.generate(tiny_model.params, tokens, 5)[0][1].tolist()
  strengths = [0.5, 3.0]
  ppl, new = generation_stage.continuations(tiny_model, "block_1/ffn_hidden", prompts, rows, strengths, 5)
  for v in range(2):
    for a, alpha in enumerate(strengths):
      one_ppl, one_new = generation_stage.continuations(tiny_model, "block_1/ffn_hidden", prompts, rows[v:v + 1],
                                                        [alpha], 5)
      np.testing.assert_array_equal(new[v][a], one_new[0][0])
      np.testing.assert_allclose(ppl[v, a], one_ppl[0, 0], rtol=1e-4)


def test_target_tokens_are_the_ones_the_topic_raises():
  texts = [[5, 5, 7, 1], [5, 7, 2], [1, 2, 3], [1, 2, 2, 3], [9, 9, 1]]
  topic = np.array([True, True, False, False, False])
  assert generation_stage.target_tokens(texts, topic, 12, 2) == [5, 7]
  # Token 9 is frequent only outside the topic; token 1 appears in both: neither is a target ahead of 5, 7.
  assert generation_stage.target_tokens(texts, topic, 12, 10)[:2] == [5, 7]


@pytest.mark.parametrize("stage", ["splice", "generation"])
def test_minilm_refuses_the_causal_lm_stages_in_one_line(stage):
  cfg = configuration.override(codec_minilm.get_config("smoke"), {
      "stages": tuple(codec_minilm.get_config("smoke").stages) + (stage,)})
  with pytest.raises(ConfigError) as raised:
    codec_config.parse_codec_config(cfg)
  message = str(raised.value)
  assert "\n" not in message and repr(stage) in message and "minilm" in message
