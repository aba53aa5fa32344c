"""The codec's compression-rule analyses: the smoke run's outputs, bad input recorded, computed verdicts."""

import json
import math
import os

import jax
import numpy as np
import pytest

from configs import codec as codec_config
from mpcodec.studies.codec import analysis, dead_latents, pipeline, replication, rules, sections

ALLOWED = set(analysis.SECTION_VERDICTS)
ANALYSIS_FILES = ["metrics/analysis.json", "atlas.json", "atlas_inputs.npz", "report.md"] + [
    f"plots/{name}" for name in analysis.plots.PLOT_FILES]


def _strict_json(path):
  def no_constant(name):
    raise AssertionError(f"{path} holds {name}")
  with open(path) as f:
    return json.load(f, parse_constant=no_constant)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("codec_analysis"))
  cfg = pipeline.parse_codec_config(codec_config.get_config("smoke"))
  pipeline.run_codec(cfg, workdir)
  return cfg, workdir


def test_smoke_run_writes_every_analysis_output(smoke):
  cfg, workdir = smoke
  for name in ANALYSIS_FILES:
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  payload = _strict_json(os.path.join(workdir, "metrics", "analysis.json"))
  for name in analysis.SECTIONS:
    section = payload[name]
    assert {"effect", "ci", "null", "verdict"} <= set(section), name
    assert section["verdict"] in ALLOWED, (name, section["verdict"])
    if section["verdict"] == "cannot be tested":
      assert section["reason"], name
  # Every analysis per Squeezer K, with that K's faithfulness beside it.
  ks = sorted(cfg.squeezer_k_grid)
  for name in ("or_gates", "coactivation", "themes", "validation"):
    assert sorted(e["squeezer_k"] for e in payload[name]["by_squeezer_k"]) == ks
    for entry in payload[name]["by_squeezer_k"]:
      assert entry["verdict"] in ALLOWED and isinstance(entry["faithful"], bool)
  # The tax over M: the main width and the extra one of the smoke config, for each K that fits.
  widths = {e["num_neurons"] for e in payload["superposition_tax"]["by_num_neurons"]}
  assert widths == {16, 8}
  assert "no real neuron layer" in payload["validation"]["reason"]
  assert payload["dead_latents"]["this_run"][0]["dead_fraction"]["mean"] is not None


def test_replication_table_has_every_claim_with_a_computed_verdict(smoke):
  _, workdir = smoke
  payload = _strict_json(os.path.join(workdir, "metrics", "analysis.json"))
  rows = payload["replication"]
  assert len(rows) == 7
  assert all(r["verdict"] in replication.REPLICATION_VERDICTS for r in rows)
  report = open(os.path.join(workdir, "report.md")).read()
  assert "## Replication of the earlier claims" in report
  for row in rows:
    assert f"| {row['claim']} | {row['ours']} | {row['verdict']} |" in report


def test_atlas_maps_every_live_atom_to_its_neuron(smoke):
  _, workdir = smoke
  atlas = _strict_json(os.path.join(workdir, "atlas.json"))
  atoms = {a["atom"]: a for a in atlas["atoms"]}
  assert len(atoms) == atlas["num_live_atoms"] > 0
  assert sum(len(n["atoms"]) for n in atlas["neurons"]) == len(atoms)
  for neuron in atlas["neurons"]:
    for a in neuron["atoms"]:
      assert atoms[a]["neuron"] == neuron["neuron"]
      assert {r["atom"] for r in atoms[a]["roommates"]} <= set(neuron["atoms"]) - {a}
  for atom in atoms.values():
    assert 0.0 < atom["share"] <= 1.0 and 0.0 < atom["firing_frequency"] <= 1.0
    codes = [t["code"] for t in atom["top_inputs"]]
    assert codes == sorted(codes, reverse=True)
    # Ground truth: the true atoms active in each top input (k_true of them).
    assert all(len(active) == 3 for active in atom["top_input_true_atoms"])


def test_a_finished_analysis_is_read_back_not_recomputed(smoke):
  cfg, workdir = smoke
  path = os.path.join(workdir, "metrics", "analysis.json")
  before, mtime = open(path).read(), os.path.getmtime(path)
  pipeline.run_codec(cfg, workdir)
  assert os.path.getmtime(path) == mtime and open(path).read() == before


# ----------------------------------------------------------------------------- bad input


def _codes(num_tokens=64, num_atoms=6, seed=0):
  return np.random.default_rng(seed).random((num_tokens, num_atoms)).astype(np.float32) * (
      np.random.default_rng(seed + 1).random((num_tokens, num_atoms)) < 0.3)


def test_no_live_atoms_is_recorded_in_every_rule():
  settings = rules.RuleSettings(num_permutations=4)
  codes = np.zeros((32, 6), np.float32)
  rooms = rules.roommates(np.random.default_rng(0).normal(size=(3, 6)), np.zeros(6, bool), settings)
  key = jax.random.PRNGKey(0)
  assert rooms["num_pairs"] == 0
  assert "no roommate pairs" in rules.or_gates(key, np.zeros((32, 3)), codes, rooms, settings)["reason"]
  assert "no roommate pairs" in rules.coactivation_of(key, codes, rooms, settings)["reason"]
  assert "no live atom has a theme" in rules.share_theme(key, rooms["assignment_N"], np.zeros(6), 3, 4)["reason"]
  found = rules.themes_of_sae(np.eye(6), np.eye(6), codes, np.zeros(6, bool), {"planted": np.zeros(6, int)},
                              ("decoder",), "spectral", (2, 4), "silhouette", 0)
  assert found["decoder"]["reason"] and found["decoder"]["adjusted_rand"]["planted"] is None


def test_single_atom_neurons_and_sparse_cells_are_recorded():
  settings = rules.RuleSettings(min_count=1000, num_permutations=4)
  key = jax.random.PRNGKey(1)
  # Each of 6 neurons drives one atom: no neuron holds two atoms.
  rooms = rules.roommates(np.eye(6), np.ones(6, bool), settings)
  assert rooms["num_pairs"] == 0
  assert "no neuron holds two live atoms" in rules.or_gates(key, np.zeros((64, 6)), _codes(), rooms, settings)["reason"]
  # Two neurons of three atoms each, 64 tokens: every cell is below min_count=1000.
  w = np.zeros((2, 6))
  w[0, :3], w[1, 3:] = 1.0, 1.0
  rooms = rules.roommates(w, np.ones(6, bool), settings)
  gates = rules.or_gates(key, np.random.default_rng(2).random((64, 2)), _codes(), rooms, settings)
  assert rooms["num_pairs"] == 6 and gates["roommates"]["num_testable"] == 0
  assert gates["roommates"]["num_untestable"] == 6 and gates["roommates"]["prevalence"] is None
  assert ">= 1000 samples" in gates["reason"]


def test_more_themes_than_atoms_is_recorded():
  found = rules.themes_of_sae(np.eye(4)[:, :3], np.eye(4)[:, :3], _codes(num_atoms=4), np.ones(4, bool),
                              {}, ("decoder", "encoder"), "spectral", (8, 12), "silhouette", 0)
  for kind in ("decoder", "encoder"):
    assert found[kind]["reason"] and found[kind]["num_themes"] == 0


def test_records_with_reasons_combine_into_valid_json_without_nan():
  entries = sections.or_gates_section([{"k": 3, "squeezer_k": 2, "or_gates": {"reason": "no roommate pairs"},
                                        "superposition_tax": {"faithfulness_ratio": None}}], (3, 2), 2.0, 0.5, 8)
  assert entries["verdict"] == "cannot be tested" and entries["reason"] == "no roommate pairs"
  assert entries["by_squeezer_k"][0]["faithful"] is False
  json.dumps(entries, allow_nan=False)  # raises on NaN or Inf
  assert sections.finding([None, float("nan")], +1, None)["verdict"] == "cannot be tested"


# ----------------------------------------------------------------------------- computed verdicts


def test_verdicts_come_out_either_way():
  assert sections.finding([0.2, 0.3, 0.25], +1, 0.0)["verdict"] == "supported"
  assert sections.finding([-0.2, -0.3, -0.25], +1, 0.0)["verdict"] == "contradicted"
  assert sections.finding([-0.2, 0.3, 0.0], +1, 0.0)["verdict"] == "inconclusive"
  summary = {"mean": 1.8, "ci_low": 1.7, "ci_high": 1.9}
  assert replication._numeric_row("c", 1.82, summary, 0.0, False)["verdict"] == "replicates"  # pylint: disable=protected-access
  assert replication._numeric_row("c", 10.9, summary, 0.25, False)["verdict"] == "does not replicate"  # pylint: disable=protected-access
  assert replication._numeric_row("c", 1.0, None, 0.25, False)["verdict"] == "cannot be tested"  # pylint: disable=protected-access


def test_planted_themes_transfer_through_a_permuted_dictionary():
  rng = np.random.default_rng(0)
  true = rng.normal(size=(12, 8))
  order = rng.permutation(12)
  labels = np.arange(12) % 3
  learned = true[order] + 0.01 * rng.normal(size=(12, 8))
  np.testing.assert_array_equal(rules.transfer_labels(learned, true, labels, 0.9), labels[order])
  # A latent matched to no close atom keeps no theme.
  learned[0] = rng.normal(size=8)
  assert rules.transfer_labels(learned, true, labels, 0.99)[0] == -1


def test_dead_latent_summary_against_plain_counts():
  cfg = dead_latents.DeadLatentsConfig(num_latents=5, ultra_rare_below=0.1)
  counts = {0: np.array([[0, 0, 0, 1, 50], [0, 0, 2, 50, 50]]), 8: np.array([[0, 5, 20, 50, 50],
                                                                            [1, 30, 20, 50, 50]])}
  found = dead_latents.summarize(cfg, counts, num_tokens=100)
  off, on = found["by_aux_k"]
  assert off["dead_fraction"]["per_seed"] == [0.6, 0.4] and on["dead_fraction"]["per_seed"] == [0.2, 0.0]
  assert off["ultra_rare_count"]["per_seed"] == [1, 1] and on["ultra_rare_count"]["per_seed"] == [1, 1]
  assert math.isclose(found["auxk_effect"]["mean"], 0.4) and found["auxk_effect"]["verdict"] == "supported"


def test_dead_latent_setting_trains_auxk_off_and_on(tmp_path):
  cfg = pipeline.parse_codec_config(codec_config.get_config("dead_latents,smoke"))
  found = pipeline.train_dead_latent_setting(cfg, str(tmp_path))
  assert [s["aux_k"] for s in found["by_aux_k"]] == [0, 16]
  for setting in found["by_aux_k"]:
    assert len(setting["dead_fraction"]["per_seed"]) == cfg.dead_latents.num_seeds
    assert 0.0 <= setting["dead_fraction"]["mean"] <= 1.0
  assert found["auxk_effect"]["verdict"] in analysis.SECTION_VERDICTS
  assert "10 unit atoms in 16 dims" in found["source"]


def test_window_codes_equal_the_dense_codes_of_the_sae():
  from mpcodec.sae import autoencoder as sae  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(0).normal(size=(96, 8)).astype(np.float32)
  cfg = sae.SAEConfig(num_latents=20, k=3)
  state = sae.init_state(jax.random.PRNGKey(0), x, 3, cfg, 10)
  found = analysis.sae_outputs(state, cfg, x, 32)
  x_hat, codes = sae.apply(state, x, cfg)
  dense = np.asarray(sae.dense_codes(codes, 96, 20))
  np.testing.assert_array_equal(found.dense(), dense)
  np.testing.assert_allclose(found.x_hat_BxD, np.asarray(x_hat), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(found.live_N, (dense > 0).any(0))
