"""The codec on SmolLM2 through the one flow: configs/codec_smollm2.py:smoke runs end to end (on the tiny
planted Llama GGUF of tests/models/test_smollm2.py, so it takes seconds; the real model takes the same
path), writes its outputs (themes on text, detection, the CE loss recovered and generative steering with readable
samples included) and SAELens exports named as TransformerLens/SAELens users know the layer; a bad
layer name is refused, listing the valid ones, before any work."""

import json
import os

import numpy as np
import pytest

from configs import codec_smollm2
from mpcodec.core import configuration
from mpcodec.core.errors import ActivationError
from mpcodec.sae import saelens
from mpcodec.studies.codec import run, smollm2_adapter, text_models
from tests.models.test_smollm2 import TINY, _tiny_gguf
from tests.support import require_data


def _tiny_config(data_dir, model_dir, **overrides):
  # The smoke preset at the tiny model's sizes: its middle-ish block's FFN hidden (64 neurons), the SAE at 4x.
  return configuration.override(codec_smollm2.get_config("smoke"), {
      "source.text.data_dir": str(data_dir), "source.text.model_dir": model_dir,
      "source.text.layer": "block_1/ffn_hidden", "sae.num_latents": 4 * TINY["ffn"], **overrides})


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  return _tiny_gguf(tmp_path_factory.mktemp("tiny") / "model")[0]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, tiny_dir):
  data_dir = require_data("ag_news", "shakespeare")
  workdir = tmp_path_factory.mktemp("codec_smollm2")
  payload = run.main(_tiny_config(data_dir, tiny_dir), str(workdir))
  return workdir, payload


def test_the_smoke_preset_keeps_the_layer_sizes():
  cfg = codec_smollm2.get_config("smoke")
  assert cfg.source.text.model == "smollm2" and cfg.source.text.layer == "block_15/ffn_hidden"
  assert cfg.sae.num_latents == 4 * 1536 and cfg.squeezer.num_neurons in (0, 1536) and cfg.smoke
  assert cfg.stages == ("themes_text", "detection", "splice", "generation") and cfg.shuffled_latent_squeezer


def test_smoke_launch_writes_its_outputs_and_saelens_exports(smoke_run, tiny_dir):
  workdir, _ = smoke_run
  for name in ("report.md", "report.json", "atlas.json", "metrics/sae.json", "metrics/squeezer.json",
               "metrics/analysis.json", "metrics/themes_text.json", "metrics/detection.json", "plots/roc.png"):
    assert (workdir / name).is_file(), name
  # The stages a causal LM runs write their metrics; the embedding-probe ones write nothing.
  assert not (workdir / "metrics/reconstruction.json").exists() and not (workdir / "metrics/steering.json").exists()
  with open(workdir / "metrics/themes_text.json") as f:
    themes = json.load(f)
  assert themes["num_themes"] >= 1 and themes["class_names"] == ["World", "Sports", "Business", "Sci/Tech"]
  assert all(len(t["mean_max_by_class"]) == 4 for t in themes["themes"])
  with open(workdir / "metrics/detection.json") as f:
    detection = json.load(f)
  assert detection["max_fpr"] == 0.01 and detection["num_documents"] == codec_smollm2.get_config("smoke").source.text.limit
  report = (workdir / "report.md").read_text()
  assert "smoke" in report.lower() and "SmolLM2-135M-Instruct block_1/ffn_hidden over ag_news" in report
  assert "# The codec on SmolLM2" in report and "MiniLM" not in report.split("\n## ")[0]
  cfg = codec_smollm2.get_config("smoke")
  names = sorted(os.listdir(workdir / "saelens"))
  assert names == sorted(f"k{cfg.sae.k}_seed{s}" for s in range(cfg.num_seeds))
  for name in names:
    loaded = saelens.load(workdir / "saelens" / name)
    assert loaded.metadata["hook_name"] == "blocks.1.mlp.hook_post"
    assert loaded.metadata["model_name"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (loaded.d_in, loaded.d_sae) == (TINY["ffn"], 4 * TINY["ffn"])
    with open(workdir / "saelens" / name / "cfg.json") as f:
      assert json.load(f)["metadata"]["hook_name"] == "blocks.1.mlp.hook_post"


def test_smoke_launch_writes_splice_and_generation(smoke_run):
  workdir, _ = smoke_run
  for name in ("metrics/splice.json", "metrics/generation.json", "plots/generation.png"):
    assert (workdir / name).is_file(), name
  splice = json.loads((workdir / "metrics/splice.json").read_text())
  for losses in splice["sets"].values():
    assert losses["ce_zero_ablated"] > 0 and len(losses["runs"]) == 2
    for row in losses["runs"]:
      gap = losses["ce_zero_ablated"] - losses["ce_clean"]   # the random tiny model may gain from ablation
      expected = (losses["ce_zero_ablated"] - row["ce_spliced"]) / gap if gap > 0 else None
      assert row["ce_loss_recovered"] == (pytest.approx(expected) if gap > 0 else None)
  generation = json.loads((workdir / "metrics/generation.json").read_text())
  assert [t["topic"] for t in generation["topics"]] == ["World", "Sports", "Business", "Sci/Tech"]
  assert set(generation["per_seed"]["log_ratio"]) == {"theme", "atom", "diffmean", "random"}
  assert len(generation["per_seed"]["log_stability"]) == 2 and len(generation["snr"]) == 2
  assert generation["claims"]["doubling"]["verdict"] == "cannot be tested"
  report = (workdir / "report.md").read_text()
  assert "## Splicing cost: cross-entropy loss recovered" in report and "## Generative steering" in report
  samples = generation["topics"][0]["samples"]
  assert samples["0"][0] and f"α = 5: {generation['prompts'][0]!r} → {samples['2'][0]!r}" in report
  rows = {row["key"]: row for row in json.loads((workdir / "report.json").read_text())["replication"]}
  assert {"doubling", "stability", "snr", "detection"} <= set(rows)
  assert "not in config.stages" not in str(rows["doubling"].get("reason"))
  assert "next-token" in rows["doubling"]["statistic"] and "probe" not in rows["stability"]["statistic"]


def test_the_adapter_rows_are_each_texts_own_forward_pass(tiny_dir):
  adapter = text_models.load("smollm2", tiny_dir)
  ids, _ = adapter.token_ids(["the cat", "a much longer text than the first one"], 24)
  batch = adapter.activations(ids + [[]], "block_1/ffn_hidden")
  for b, row in enumerate(ids):
    alone = adapter.activations([row], "block_1/ffn_hidden")[0, :len(row)]
    np.testing.assert_allclose(batch[b, :len(row)], alone, rtol=1e-4, atol=1e-4)
    assert not np.any(batch[b, len(row):])
  assert not np.any(batch[2])
  assert len(adapter.fingerprint_of(tiny_dir)) == 64
  assert adapter.token_layers() == [f"block_{i}/{k}" for i in range(TINY["layers"]) for k in ("ffn_hidden", "residual")]


def test_hook_names_follow_transformer_lens():
  assert smollm2_adapter.hook_name("block_15/ffn_hidden") == "blocks.15.mlp.hook_post"
  assert smollm2_adapter.hook_name("block_3/residual") == "blocks.3.hook_resid_post"
  with pytest.raises(ActivationError, match="no TransformerLens hook name"):
    smollm2_adapter.hook_name("block_3/attention")


def test_a_bad_layer_lists_the_valid_ones_before_any_work(tmp_path, tiny_dir):
  data_dir = require_data("ag_news")
  with pytest.raises(ActivationError) as raised:
    run.main(_tiny_config(data_dir, tiny_dir, **{"source.text.layer": "block_7/ffn_hidden"}), str(tmp_path))
  message = str(raised.value)
  assert "\n" not in message and "'block_7/ffn_hidden'" in message and "block_1/ffn_hidden" in message
  assert not (tmp_path / "checkpoints").exists()


def test_every_preset_passes_the_config_checks():
  from mpcodec.studies.codec import config as codec_config
  for preset in (None, "smoke", "reduced"):
    cfg = codec_config.parse_codec_config(codec_smollm2.get_config(preset))
    assert cfg.source.text.model == "smollm2" and cfg.source.text.layer == "block_15/ffn_hidden"
    assert cfg.sae.num_latents == 4 * 1536 and cfg.stages == ("themes_text", "detection", "splice", "generation")
