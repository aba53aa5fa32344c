"""The MiniLM codec study: the smoke launch writes every output, valid and consistent; bad input is named."""

import json
import math
import os
import shutil
import types

import jax
import jax.numpy as jnp

import numpy as np
import pytest

from configs import codec_minilm
from mpcodec.core import configuration, stats
from mpcodec.core.errors import ActivationError, ConfigError
from mpcodec.metrics import steering as steering_metrics
from mpcodec.sae import autoencoder as sae
from mpcodec.sae import saelens
from mpcodec.studies.codec import (config as codec_config, detection_study, minilm_passes, pipeline, run,
                                   steering_study, text_claims, text_stages)
from tests.support import require_data

OUTPUTS = ("report.md", "atlas.json", "metrics/sae.json", "metrics/squeezer.json", "metrics/analysis.json",
           "metrics/reconstruction.json", "metrics/themes_text.json", "metrics/steering.json",
           "metrics/detection.json", "plots/steering.png", "plots/snr.png", "plots/roc.png")


def _smoke_config(data_dir, **overrides):
  cfg = codec_minilm.get_config("smoke")
  return configuration.override(cfg, {"source.text.data_dir": str(data_dir),
                                      "source.text.model_dir": str(data_dir / "minilm"), **overrides})


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
  names = [f"k{k}_seed{s}" for k in cfg.sae.k_grid for s in range(cfg.num_seeds)]
  assert sorted(os.listdir(workdir / "saelens")) == sorted(names)
  for name in names:
    loaded = saelens.load(workdir / "saelens" / name)
    assert loaded.metadata["hook_name"] == cfg.source.text.layer and loaded.d_sae == cfg.sae.num_latents
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


def test_a_smoke_run_gives_no_verdict_and_says_so(smoke_run):
  workdir, payload = smoke_run
  report = (workdir / "report.md").read_text()
  assert report.startswith("> **No verdicts: smoke run") and report.count("> **No verdicts") == 1
  summary = _load(workdir, "report.json")
  assert summary["smoke"] is True and summary["no_verdict_reason"].startswith("smoke run")
  assert [row["key"] for row in summary["replication"]] == ["validation", "or_prevalence", "doubling",
                                                             "stability", "snr", "detection"]
  assert summary["codec"]["smoke"] is True   # the codec part's own verdicts, under the same flag
  for row in payload["claims"]:
    assert row["verdict"] == "cannot be tested", row
    assert row["reason"] == "smoke run", row
    assert f"| {text_claims.verdict_text(row)} |" in report
  assert "| cannot be tested (smoke run) |" in report
  for name, found in payload["hypotheses"].items():
    assert found["verdict"] == "cannot be tested", name
  # The empty "- decoder: " bullet (no planted theme kinds on text) is gone.
  assert "\n- decoder: \n" not in report


def test_replication_rows_carry_margin_and_statistic(smoke_run):
  _, payload = smoke_run
  by_key = {row["key"]: row for row in payload["claims"]}
  assert by_key["snr"]["margin"] == "+-0.1" and by_key["detection"]["margin"] == "+-2 points"
  assert by_key["doubling"]["margin"] == "+-20% (log scale)"
  assert "calibration part" in by_key["detection"]["statistic"]
  steering = payload["steering"]
  assert steering["reference_strength"] == codec_minilm.get_config("smoke").steering.reference_strength
  assert len(steering["per_seed"]["theme_minus_random"]) == 2


def test_steering_and_detection_payloads_are_consistent(smoke_run):
  workdir, _ = smoke_run
  steering = _load(workdir, "metrics/steering.json")
  cfg = codec_minilm.get_config("smoke")
  assert steering["strengths"] == list(cfg.steering.strengths)
  for set_name in ("steering", "neutral"):
    for method in ("theme", "atom", "diffmean", "random"):
      table = steering["sets"][set_name][method]
      for key in ("p_target_clean", "p_target_steered", "kl", "drift", "snr"):
        assert len(table[key]) == len(steering["strengths"])
      for cell in table["kl"]:
        assert cell["mean"] is not None and cell["mean"] >= -1e-6
      for cell in table["p_target_steered"]:
        assert 0.0 <= cell["mean"] <= 1.0
  # The clean target probability is the same set of documents for every method and strength.
  clean = {round(c["mean"], 6) for m in ("theme", "atom", "diffmean", "random")
           for c in steering["sets"]["steering"][m]["p_target_clean"]}
  assert len(clean) == 1
  detection = _load(workdir, "metrics/detection.json")
  for name, rates in detection["detectors"].items():
    assert 0.0 <= rates["auroc"]["mean"] <= 1.0, name
    assert rates["calibrated_fpr"]["mean"] <= 0.5
  themes = _load(workdir, "metrics/themes_text.json")
  assert themes["num_themes"] >= 2 and len(themes["themes"]) == themes["num_themes"]
  assert all(len(t["mean_max_by_class"]) == 4 for t in themes["themes"])
  assert sum(t["size"] for t in themes["themes"]) <= cfg.sae.num_latents
  recon = _load(workdir, "metrics/reconstruction.json")
  assert len(recon["runs"]) == len(cfg.sae.k_grid) * cfg.num_seeds
  for row in recon["runs"]:
    assert -1.0 <= row["spliced_cosine"] <= 1.0 + 1e-6 and math.isfinite(row["fvu"])


def test_a_subset_of_the_text_stages_runs_alone_and_the_report_says_which_did_not(smoke_run, tmp_path):
  """The smoke run's workdir again with only themes_text and detection: the codec's stages and analyses are
  finished (the downstream stages are no part of their fingerprints), the two stages give the full run's
  figures, and the others write nothing and leave their claims and hypotheses "cannot be tested"."""
  workdir, _ = smoke_run
  copy = tmp_path / "partial"
  shutil.copytree(workdir, copy)
  for name in ("metrics/steering.json", "metrics/reconstruction.json", "metrics/detection.json",
               "metrics/themes_text.json", "plots/steering.png"):
    os.remove(copy / name)
  data_dir = require_data("minilm", "ag_news", "shakespeare")
  # The smoke preset shrinks every stage's knobs: the steering section goes back to its defaults here.
  steering_defaults = configuration.to_dict(steering_study.SteeringConfig())
  raw = _smoke_config(data_dir, stages=("themes_text", "detection"),
                      **{f"steering.{key}": value for key, value in steering_defaults.items()})
  payload = run.main(raw, str(copy))
  assert not (copy / "metrics/steering.json").exists() and not (copy / "metrics/reconstruction.json").exists()
  assert _load(copy, "metrics/themes_text.json") == _load(workdir, "metrics/themes_text.json")
  assert _load(copy, "metrics/detection.json")["detectors"] == _load(workdir, "metrics/detection.json")["detectors"]
  report = (copy / "report.md").read_text()
  for stage in ("reconstruction", "steering"):
    assert f"Not run (`{stage}` is not in `config.stages`)." in report, stage
  rows = {row["key"]: row for row in payload["claims"]}
  assert rows["doubling"]["verdict"] == "cannot be tested" and "steering stage" in rows["doubling"]["reason"]
  assert payload["hypotheses"]["theme_above_random"]["verdict"] == "cannot be tested"
  assert payload["steering"] is None and payload["reconstruction"] is None


def test_bad_input_is_named_before_any_long_work(tmp_path):
  data_dir = require_data("minilm", "ag_news", "shakespeare")
  with pytest.raises(ActivationError, match="valid layer names"):
    run.main(_smoke_config(data_dir, **{"source.text.layer": "block_9/ffn_hidden"}), str(tmp_path / "a"))
  with pytest.raises(ConfigError, match="config.source.text.corpus"):
    codec_config.parse_codec_config(_smoke_config(data_dir, **{"source.text.corpus": "shakespeare"}))
  with pytest.raises(ConfigError, match="config.data.chosen_k"):
    codec_config.parse_codec_config(_smoke_config(data_dir, **{"data.chosen_k": 5}))
  with pytest.raises(ConfigError, match="config.steering.reference_strength"):
    codec_config.parse_codec_config(_smoke_config(data_dir, **{"steering.reference_strength": 2.5}))
  with pytest.raises(ConfigError, match="config.steering.random_directions"):
    codec_config.parse_codec_config(_smoke_config(data_dir, **{"steering.random_directions": 0}))
  assert not os.path.exists(tmp_path / "a" / "checkpoints")


def test_the_progress_bar_counts_every_codec_stage_that_trains():
  smoke = codec_config.parse_codec_config(codec_minilm.get_config("smoke"))
  # SAE 30 steps; the main Squeezer and its shuffled-latent null, 20 steps each; no tax sweep.
  assert pipeline.training_steps(smoke, 1536) == 30 + 2 * 20
  full = codec_config.parse_codec_config(codec_minilm.get_config())
  # The tax sweep adds M = 384 and 768 (K = 64 fits both).
  assert pipeline.training_steps(full, 1536) == full.sae_loop.steps + 4 * full.squeezer_loop.steps
  unshuffled = codec_config.parse_codec_config(configuration.override(codec_minilm.get_config("smoke"), {
      "shuffled_latent_squeezer": False, "tax_width_factors": (0.01, 0.5)}))
  # Without the null: the main Squeezer and the tax width M = 150; M = round(0.01 * 300) = 3 fits no K = 8
  # and is skipped.
  assert pipeline.training_steps(unshuffled, 300) == 30 + 2 * 20


def test_stratified_train_split_keeps_the_class_balance():
  labels = np.repeat(np.arange(4), 50)
  train = text_stages.train_split(labels, 0.5, 0)
  assert np.bincount(labels[train]).tolist() == [25, 25, 25, 25]
  np.testing.assert_array_equal(train, text_stages.train_split(labels, 0.5, 0))


def test_detection_parts_are_disjoint_stratified_and_reproducible():
  labels = np.repeat(np.arange(4), 40)
  parts = detection_study.stratified_parts(labels, 3, (0.25, 0.5), seed=1)
  for split in parts:
    for label in range(4):
      assert np.bincount(split[labels == label], minlength=3).tolist() == [10, 10, 20]
  assert not np.array_equal(parts[0], parts[1])
  np.testing.assert_array_equal(parts, detection_study.stratified_parts(labels, 3, (0.25, 0.5), seed=1))


def test_detection_rate_comes_from_a_part_disjoint_from_its_threshold():
  """Calibration negatives score 0, test negatives 10, positives 5: a threshold from the calibration part
  (0) flags every test document (rate 1, FPR 1). A threshold from the test part, or from both parts, would
  be 10 (rate 0, FPR 0); rates read on the calibration part would have FPR 0."""
  labels = np.repeat(np.arange(4), 40)
  part = detection_study.stratified_parts(labels, 1, (0.25, 0.5), seed=3)[0]
  positive = labels == 1
  scores = np.where(positive, 5.0, np.where(part == detection_study.TEST, 10.0, 0.0)).astype(np.float32)
  found = detection_study.calibrated_rates(scores, positive, part, max_fpr=0.01)
  assert found["threshold"] == 0.0
  assert found["calibrated_tpr"] == 1.0 and found["calibrated_fpr"] == 1.0
  # The oracle rate reads the test part's own ROC: it would put the threshold at 10.
  assert found["tpr_at_fpr"] == 0.0
  with pytest.raises(ValueError, match="calibration part"):
    detection_study.calibrated_rates(scores, positive, np.where(part == detection_study.CALIBRATION, 0, part), 0.01)


def _planted_steering(num_seeds, gain=8.0, dim=1024, num_random=16):
  """The steering result of a planted linear probe (logits = gain · W x, 4 classes, target 1) for each seed:
  the theme is W[1] plus noise; the random control is `random_control`'s directions; strengths 1 and 2."""
  rng = np.random.default_rng(0)
  w_CxD = np.linalg.qr(rng.normal(size=(dim, 4)))[0].T
  x_NxD = rng.normal(size=(64, dim)) / np.sqrt(dim)
  strengths = [1.0, 2.0]

  def effects(direction):
    out = {key: [] for key in ("p_target_clean", "p_target_steered", "kl", "drift", "snr")}
    clean = gain * x_NxD @ w_CxD.T
    for strength in strengths:
      steered_x = x_NxD + np.asarray(steering_metrics.norm_matched_delta(direction, x_NxD, strength))
      steered = gain * steered_x @ w_CxD.T
      out["p_target_clean"].append(float(steering_metrics.mean_class_probability(clean, 1)))
      out["p_target_steered"].append(float(steering_metrics.mean_class_probability(steered, 1)))
      out["kl"].append(float(np.mean(steering_metrics.kl_divergence(clean, steered))))
      out["drift"].append(float(np.mean(steering_metrics.cosine_drift(x_NxD, steered_x))))
      out["snr"].append(float(steering_metrics.population_snr(steered_x - x_NxD, w_CxD[1])))
    return {key: np.asarray(v) for key, v in out.items()}

  rows = {"theme": [], "atom": [], "diffmean": [], "random": []}
  for seed in range(num_seeds):
    rows["theme"].append(effects(w_CxD[1] + 0.3 * rng.normal(size=dim) / np.sqrt(dim)))
    rows["atom"].append(effects(w_CxD[1] + 3.0 * rng.normal(size=dim) / np.sqrt(dim)))
    if seed == 0:
      rows["diffmean"].append(effects(w_CxD[1]))
    controls = [effects(v) for v in steering_study.random_control(0, seed, num_random, dim)]
    rows["random"].append({key: np.mean([c[key] for c in controls], 0) for key in controls[0]})
  stacked = {m: {key: np.stack([r[key] for r in rs]) for key in rs[0]} for m, rs in rows.items()}
  snr = [{"seed_index": s, "atoms": [1, 2, 4], "snr": [1.0, 1.4, 2.0], "exponent": 0.5, "reason": None}
         for s in range(num_seeds)]
  return {"strengths": strengths, "sets": {"steering": stacked, "neutral": stacked}, "snr": snr,
          "snr_strength": 1.0, "random_directions": num_random}


def test_the_theme_beats_a_same_norm_random_control_only_where_planted():
  result = _planted_steering(6)
  summary = text_claims.steering_summary(result, 1.0, [])
  per_seed = summary["per_seed"]
  # The random directions move p(target) by almost nothing; the planted theme raises it well above them.
  assert np.all(np.abs(per_seed["log_ratio"]["random"]) < 0.2)
  assert np.all(np.asarray(per_seed["theme_minus_random"]) > 0.5)
  # The claims read the reference strength fixed in the config, not the strength with the largest effect.
  ratio = result["sets"]["steering"]["theme"]["p_target_steered"] / result["sets"]["steering"]["theme"][
      "p_target_clean"]
  assert np.all(ratio[:, 1] > ratio[:, 0])
  np.testing.assert_allclose(per_seed["log_ratio"]["theme"], np.log(ratio[:, 0]), rtol=1e-6)
  detection = {"per_seed": {"theme_minus_probe_auroc": [0.01, -0.02, 0.0, 0.02, -0.01, 0.0]}}
  found = text_claims.hypotheses(summary, detection, smoke=False)
  assert found["theme_above_random"]["verdict"] == "supported"
  assert found["theme_above_random"]["family_size"] == 3
  assert found["theme_detector_above_probe"]["verdict"] == "inconclusive"
  # Below 5 seeds, or in a smoke run, no verdict.
  few = text_claims.steering_summary(_planted_steering(3), 1.0, [])
  assert text_claims.hypotheses(few, detection, smoke=False)["theme_above_random"]["verdict"] == (
      "cannot be tested")
  smoke = text_claims.hypotheses(summary, detection, smoke=True)
  assert {h["verdict"] for h in smoke.values()} == {"cannot be tested"}
  assert smoke["theme_above_random"]["reason"] == "smoke run"


def test_random_control_is_unit_and_depends_only_on_the_seed_index():
  first = steering_study.random_control(0, 3, 4, 32)
  np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(first, steering_study.random_control(0, 3, 4, 32))
  assert not np.allclose(first, steering_study.random_control(0, 4, 4, 32))


def _snr_exponents(num_seeds, law, dim=2000, counts=(1, 2, 4, 8, 16, 32, 64)):
  """Per seed: the exponent of SNR against N for planted atoms d_i = s·u + n_i. "sqrt": independent
  off-target parts (SNR ∝ √N); "linear": telescoping ones, n_i = m_i − m_{i−1}, whose sum stays the size
  of one (SNR ∝ N)."""
  exponents = []
  for seed in range(num_seeds):
    rng = np.random.default_rng(seed)
    target = np.zeros(dim)
    target[0] = 1.0
    noise = rng.normal(size=(max(counts) + 1, dim)) / np.sqrt(dim)
    noise[:, 0] = 0.0
    off = noise[1:] if law == "sqrt" else noise[1:] - noise[:-1]
    atoms = 0.3 * target + off
    snr = [float(steering_metrics.population_snr(atoms[:n].sum(0)[None], target)) for n in counts]
    exponents.append(float(steering_metrics.log_log_slope(np.asarray(counts, float), np.asarray(snr))))
  return exponents


def test_snr_exponent_replicates_on_planted_sqrt_n_and_not_on_linear_scaling():
  spec = text_claims.CLAIMS["snr"]
  sqrt_n = text_claims.replication_table([text_claims.test_claim(spec, _snr_exponents(6, "sqrt"), False)])
  assert sqrt_n[0]["verdict"] == "replicates", sqrt_n[0]["reason"]
  linear = text_claims.replication_table([text_claims.test_claim(spec, _snr_exponents(6, "linear"), False)])
  assert linear[0]["verdict"] == "does not replicate", linear[0]["reason"]
  assert abs(linear[0]["estimate"] - 1.0) < 0.1
  # The same planted law gives no verdict in a smoke run, nor with 4 seeds.
  for values, smoke, why in ((_snr_exponents(6, "sqrt"), True, "smoke run"),
                             (_snr_exponents(4, "sqrt"), False, "4 seeds, at least 5 needed")):
    row = text_claims.replication_table([text_claims.test_claim(spec, values, smoke)])[0]
    assert row["verdict"] == "cannot be tested" and row["reason"] == why
    assert text_claims.verdict_text(row) == f"cannot be tested ({why})"
  # A seed whose SNR was not positive has no exponent: it is left out and counted.
  row = text_claims.replication_table([text_claims.test_claim(spec, _snr_exponents(6, "sqrt") + [math.nan],
                                                                   False, dropped_reason="no logarithm")])[0]
  assert row["num_seeds"] == 6 and row["note"] == "1 of 7 seeds left out (no logarithm)"


def test_the_replication_table_is_one_holm_family():
  spec = text_claims.CLAIMS["snr"]
  tests = [text_claims.test_claim(spec, _snr_exponents(6, "sqrt"), False),
           text_claims.test_claim(text_claims.CLAIMS["detection"], [0.98, 0.985, 0.979, 0.983, 0.981], False),
           text_claims.test_claim(text_claims.CLAIMS["doubling"], [], False, why_missing="not run")]
  rows = text_claims.replication_table(tests)
  assert [r["family_size"] for r in rows] == [2, 2, 0]
  assert rows[2]["verdict"] == "cannot be tested" and rows[2]["reason"] == "not run"
  assert all(r["p_for_adjusted"] >= r["p_for"] for r in rows[:2])


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
