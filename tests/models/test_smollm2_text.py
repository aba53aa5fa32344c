"""The SmolLM2 text adapter on the tiny planted GGUF: each item's tapped rows equal its own unpadded
forward pass, items and token ids line up, long texts are cut and counted, bad layers are refused."""

import numpy as np
import pytest

from mpcodec.core.errors import ActivationError
from mpcodec.models import smollm2_text
from tests.models.test_smollm2 import _tiny_gguf

TEXTS = ["the theme of the thing", "a", "then the 1234 and the rest of it, the end", "th"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  path, _ = _tiny_gguf(tmp_path_factory.mktemp("tiny") / "model")
  return smollm2_text.load(path)


def test_tap_rows_are_each_items_own_forward_pass(tiny):
  model, params, tokenizer = tiny
  layer = "block_1/ffn_hidden"
  out = smollm2_text.tap(model, TEXTS, layer, batch_size=3)
  ids = [tokenizer.encode(t, add_special_tokens=False).ids for t in TEXTS]
  assert out.token_ids_T.tolist() == [t for row in ids for t in row]
  assert out.item_T.tolist() == [i for i, row in enumerate(ids) for _ in row]
  assert out.acts_TxD.dtype == np.float32 and out.acts_TxD.shape == (len(out.item_T), 64)
  assert out.num_truncated == 0
  for item, row in enumerate(ids):
    alone = model.activations(params, np.asarray([row]), np.ones((1, len(row))), [layer])[layer]
    np.testing.assert_allclose(out.acts_TxD[out.item_T == item], np.asarray(alone)[0], rtol=1e-5, atol=1e-4)


def test_long_texts_are_cut_and_counted_and_bad_layers_refused(tiny):
  model = tiny[0]
  out = smollm2_text.tap(model, TEXTS, "block_0/attention", max_length=4)
  assert out.num_truncated == 2 and np.bincount(out.item_T).tolist() == [4, 1, 4, 2]
  assert "block_1/ffn_hidden" in smollm2_text.layer_names(model)
  assert len(smollm2_text.layer_names()) == 2 + 30 * 3
  with pytest.raises(ActivationError, match=r"unknown layer name \['block_2/residual'\]; valid layer names"):
    smollm2_text.tap(model, TEXTS, "block_2/residual")
