"""CE loss recovered on the tiny planted Llama: the clean loss equals a numpy log-softmax of each text's own
logits; a perfect SAE recovers 1, a zero SAE 0; the ratio's closed form."""

import numpy as np
import pytest

from mpcodec.models import smollm2
from mpcodec.studies.codec import smollm2_splice
from tests.models.test_smollm2 import _tiny_gguf

LAYER = "block_0/ffn_hidden"


@pytest.fixture(scope="module")
def tiny_and_texts(tmp_path_factory):
  model = smollm2.load(_tiny_gguf(tmp_path_factory.mktemp("tiny") / "model")[0])
  # Texts the model predicts well (its own greedy continuations), so ablating a layer costs loss.
  prompts = ["the the", "a b c", "hello", "th"]
  new, _ = model.generate(model.params, model.tokenize(prompts), max_new_tokens=10)
  texts = [p + model.decode(row) for p, row in zip(prompts, new)]
  return model, texts


def _numpy_ce(model, texts):
  total, count = 0.0, 0
  for ids in model.token_ids(texts, 24)[0]:
    tokens = model.pad([ids])
    logits = np.asarray(model.apply(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT)[0][0],
                        np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    total -= sum(logp[t, ids[t + 1]] for t in range(len(ids) - 1))
    count += len(ids) - 1
  return total / count, count


def test_perfect_and_zero_saes_recover_one_and_zero(tiny_and_texts):
  model, texts = tiny_and_texts
  out = smollm2_splice.splice_losses(model, texts, LAYER, [lambda x: x, np.zeros_like], max_length=24,
                                     batch_size=3)
  ce, count = _numpy_ce(model, texts)
  assert out["num_predicted_tokens"] == count
  np.testing.assert_allclose(out["ce_clean"], ce, rtol=1e-4)
  assert out["ce_zero_ablated"] > out["ce_clean"] + 1e-3
  perfect, zero = out["runs"]
  np.testing.assert_allclose(perfect["ce_spliced"], out["ce_clean"], rtol=1e-5)
  np.testing.assert_allclose(perfect["ce_loss_recovered"], 1.0, atol=1e-3)
  np.testing.assert_allclose(zero["ce_loss_recovered"], 0.0, atol=1e-6)


def test_loss_recovered_closed_form():
  assert smollm2_splice.loss_recovered(2.0, 2.5, 4.0) == pytest.approx(0.75)
  assert smollm2_splice.loss_recovered(2.0, 2.0, 2.0) is None
