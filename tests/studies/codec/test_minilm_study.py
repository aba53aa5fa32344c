"""The MiniLM codec study: the smoke launch writes every output, valid and consistent; bad input is named."""

import json
import math
import os
import types

import jax
import jax.numpy as jnp

import numpy as np
import pytest

from configs import codec_minilm
from mpcodec.core import configuration, stats
from mpcodec.core.errors import ActivationError, ConfigError
from mpcodec.sae import autoencoder as sae
from mpcodec.sae import saelens
from mpcodec.studies.codec import detection_study, minilm_passes, minilm_study, run, steering_study
from tests.support import require_data

OUTPUTS = ("report.md", "atlas.json", "metrics/sae.json", "metrics/squeezer.json", "metrics/analysis.json",
           "metrics/reconstruction.json", "metrics/themes_text.json", "metrics/steering.json",
           "metrics/detection.json", "plots/steering.png", "plots/snr.png", "plots/roc.png")


def _smoke_config(data_dir, **overrides):
  cfg = codec_minilm.get_config("smoke")
  return configuration.override(cfg, {"text.data_dir": str(data_dir),
                                      "text.model_dir": str(data_dir / "minilm"), **overrides})


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  data_dir = require_data("minilm", "ag_news", "shakespeare")
  workdir = tmp_path_factory.mktemp("codec_minilm")
  payload = run.main(_smoke_config(data_dir), str(workdir))
  return workdir, payload


def _load(workdir, name):
  with open(workdir / name) as f:
    return json.load(f, parse_constant=lambda c: pytest.fail(f"{name} holds {c}"))


def test_smoke_launch_writes_every_output(smoke_run):
  workdir, _ = smoke_run
  missing = [name for name in OUTPUTS if not (workdir / name).is_file()]
  assert not missing, missing
  cfg = codec_minilm.get_config("smoke")
  # Every SAE of the k sweep, in SAELens' format, labelled with the layer it was trained on.
  names = [f"k{k}_seed{s}" for k in cfg.codec.sae.k_grid for s in range(cfg.codec.num_seeds)]
  assert sorted(os.listdir(workdir / "saelens")) == sorted(names)
  for name in names:
    loaded = saelens.load(workdir / "saelens" / name)
    assert loaded.metadata["hook_name"] == cfg.text.layer and loaded.d_sae == cfg.codec.sae.num_latents
  for name in OUTPUTS:
    if name.endswith(".json"):
      _load(workdir, name)
  atlas = _load(workdir, "atlas.json")
  assert atlas["atoms"]
  for atom in atlas["atoms"]:
    assert len(atom["top_contexts"]) == len(atom["top_inputs"])
    assert all("[[" + c["token"] + "]]" in c["context"] for c in atom["top_contexts"])
  report = (workdir / "report.md").read_text()
  for claim in ("doubled the target probability", "1.8x more stable", "sqrt(N)", "98.2%",
                "Validation Hypothesis"):
    assert claim in report, claim


def test_replication_verdicts_follow_from_the_intervals(smoke_run):
  _, payload = smoke_run
  allowed = {"replicates", "does not replicate", "inconclusive", "cannot be tested"}
  assert len(payload["claims"]) == 6
  for claim in payload["claims"]:
    assert claim["verdict"] in allowed | {"supported", "contradicted"}, claim
  steering = payload["steering"]["claims"]
  doubling = steering["doubling"]
  if doubling["ours"]["low"] is not None:
    expected = ("replicates" if doubling["ours"]["low"] >= 2 else
                "does not replicate" if doubling["ours"]["high"] < 2 else "inconclusive")
    assert doubling["verdict"] == expected


def test_steering_and_detection_payloads_are_consistent(smoke_run):
  workdir, _ = smoke_run
  steering = _load(workdir, "metrics/steering.json")
  cfg = codec_minilm.get_config("smoke")
  assert steering["strengths"] == list(cfg.steering.strengths)
  for set_name in ("steering", "neutral"):
    for method in ("theme", "atom", "diffmean"):
      table = steering["sets"][set_name][method]
      for key in ("p_target_clean", "p_target_steered", "kl", "drift", "snr"):
        assert len(table[key]) == len(steering["strengths"])
      for cell in table["kl"]:
        assert cell["mean"] is not None and cell["mean"] >= -1e-6
      for cell in table["p_target_steered"]:
        assert 0.0 <= cell["mean"] <= 1.0
  # The clean target probability is the same set of documents for every method and strength.
  clean = {round(c["mean"], 6) for m in ("theme", "atom", "diffmean")
           for c in steering["sets"]["steering"][m]["p_target_clean"]}
  assert len(clean) == 1
  detection = _load(workdir, "metrics/detection.json")
  for name, rates in detection["detectors"].items():
    assert 0.0 <= rates["auroc"]["mean"] <= 1.0, name
    assert rates["calibrated_fpr"]["mean"] <= 0.5
  themes = _load(workdir, "metrics/themes_text.json")
  assert themes["num_themes"] >= 2 and len(themes["themes"]) == themes["num_themes"]
  assert all(len(t["mean_max_by_class"]) == 4 for t in themes["themes"])
  assert sum(t["size"] for t in themes["themes"]) <= cfg.codec.sae.num_latents
  recon = _load(workdir, "metrics/reconstruction.json")
  assert len(recon["runs"]) == len(cfg.codec.sae.k_grid) * cfg.codec.num_seeds
  for row in recon["runs"]:
    assert -1.0 <= row["spliced_cosine"] <= 1.0 + 1e-6 and math.isfinite(row["fvu"])


def test_bad_input_is_named_before_any_long_work(tmp_path):
  data_dir = require_data("minilm", "ag_news", "shakespeare")
  with pytest.raises(ActivationError, match="valid layer names"):
    minilm_study.run(_smoke_config(data_dir, **{"text.layer": "block_9/ffn_hidden"}), str(tmp_path / "a"))
  with pytest.raises(ConfigError, match="config.text.corpus"):
    minilm_study.parse_config(_smoke_config(data_dir, **{"text.corpus": "shakespeare"}))
  with pytest.raises(ConfigError, match="config.data.chosen_k"):
    minilm_study.parse_config(_smoke_config(data_dir, **{"data.chosen_k": 5}))
  with pytest.raises(ConfigError, match="config.steering.reference_strength"):
    minilm_study.parse_config(_smoke_config(data_dir, **{"steering.reference_strength": 2.5}))
  assert not os.path.exists(tmp_path / "a" / "checkpoints")


def test_stratified_train_split_keeps_the_class_balance():
  labels = np.repeat(np.arange(4), 50)
  train = minilm_study.train_split(labels, 0.5, 0)
  assert np.bincount(labels[train]).tolist() == [25, 25, 25, 25]
  np.testing.assert_array_equal(train, minilm_study.train_split(labels, 0.5, 0))


def test_detection_parts_are_disjoint_stratified_and_reproducible():
  labels = np.repeat(np.arange(4), 40)
  parts = detection_study.stratified_parts(labels, 3, (0.25, 0.5), seed=1)
  for split in parts:
    for label in range(4):
      assert np.bincount(split[labels == label], minlength=3).tolist() == [10, 10, 20]
  assert not np.array_equal(parts[0], parts[1])
  np.testing.assert_array_equal(parts, detection_study.stratified_parts(labels, 3, (0.25, 0.5), seed=1))


def test_theme_selectivity_is_cohens_d_and_picks_the_planted_theme():
  rng = np.random.default_rng(0)
  is_target = np.arange(120) < 30
  scores = rng.normal(size=(120, 5))
  scores[is_target, 3] += 2.0
  found = steering_study.selectivity(scores, is_target)
  expected = [stats.standardized_mean_difference(scores[is_target, j], scores[~is_target, j])
              for j in range(5)]
  np.testing.assert_allclose(found, expected, rtol=1e-10)
  labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
  atom_max = np.zeros((120, 8))
  atom_max[:, 6] = scores[:, 3]
  decoder = rng.normal(size=(8, 4))
  choice = steering_study.choose_vectors(decoder, labels, scores[:, :4], atom_max, is_target,
                                         np.ones(120, bool), (1, 2, 4, 16))
  assert choice["theme"] == 3 and choice["atom"] == 6 and choice["theme_size"] == 2
  np.testing.assert_allclose(choice["theme_vector"], decoder[6] + decoder[7])
  assert choice["snr_counts"] == [1, 2, 4]
  np.testing.assert_allclose(choice["snr_vectors"][0], decoder[6])


class _RowsSource:
  """What document_statistics reads of a TextActivationSource: rows stored document after document."""

  def __init__(self, acts_NxD, doc_lengths):
    offsets = np.concatenate([[0], np.cumsum(doc_lengths)])
    self.acts_NxD, self.width = acts_NxD, acts_NxD.shape[1]
    self.rows = types.SimpleNamespace(doc_offsets=offsets,
                                      doc_index_N=np.repeat(np.arange(len(doc_lengths)), doc_lengths))

  def ordered_batches(self, batch_size):
    for start in range(0, self.acts_NxD.shape[0], batch_size):
      yield start, self.acts_NxD[start:start + batch_size]


def test_document_statistics_match_a_direct_computation():
  rng = np.random.default_rng(0)
  lengths = [3, 9, 1, 6, 5]
  acts = rng.normal(size=(sum(lengths), 6)).astype(np.float32)
  source = _RowsSource(acts, lengths)
  cfg = sae.SAEConfig(num_latents=10, k=3, aux_k=0)
  states = jax.vmap(lambda key: sae.init_state(key, jnp.asarray(acts), 3, cfg, 1))(
      jax.random.split(jax.random.PRNGKey(1), 2))
  members = (rng.random((2, 10, 3)) < 0.4).astype(np.float32)
  held = np.array([True, False, True, True, False])
  found = minilm_passes.document_statistics(source, states, cfg, members, held, top_k=2, batch_rows=4)
  docs = source.rows.doc_index_N
  for r in range(2):
    state = jax.tree.map(lambda a: a[r], states)
    x_hat, codes = sae.apply(state, jnp.asarray(acts), cfg)
    codes = np.asarray(sae.dense_codes(codes, acts.shape[0], 10))
    themes = codes @ members[r]
    for d in range(5):
      np.testing.assert_allclose(found.atom_max_RxDxN[r, d], codes[docs == d].max(0), rtol=1e-5)
      np.testing.assert_allclose(found.theme_max_RxDxT[r, d], themes[docs == d].max(0), rtol=1e-5)
      np.testing.assert_allclose(found.theme_mean_RxDxT[r, d], themes[docs == d].mean(0), rtol=1e-5,
                                 atol=1e-6)
      np.testing.assert_allclose(found.pooled_mean_DxF[d], acts[docs == d].mean(0), rtol=1e-5, atol=1e-6)
    for t in range(3):
      np.testing.assert_allclose(found.top_values_RxTxK[r, t], np.sort(themes[:, t])[::-1][:2], rtol=1e-5)
    rows = held[docs]
    x, x_hat = acts[rows].astype(np.float64), np.asarray(x_hat)[rows]
    expected_fvu = np.sum((x - x_hat) ** 2) / np.sum((x - x.mean(0)) ** 2)
    np.testing.assert_allclose(found.fvu_R[r], expected_fvu, rtol=1e-4)
    np.testing.assert_allclose(found.l0_R[r], (codes[rows] > 0).sum(1).mean(), rtol=1e-6)
    np.testing.assert_allclose(found.dead_fraction_R[r], (codes[rows] > 0).sum(0).__eq__(0).mean())
