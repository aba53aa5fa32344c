"""The codec's compression-rule analyses: the smoke run's outputs, bad input recorded, computed verdicts, and
the nulls an untrained model cannot pass, on planted structure where the answer is known."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import codec as codec_config
from mpcodec.data.toy_features import ThemeConfig, make_dictionary, make_themed_dictionary, sample_dictionary_activations
from mpcodec.sae import autoencoder as sae
from mpcodec.studies.codec import analysis, dead_latents, pipeline, replication, rules, sections, verdicts

ALLOWED = set(analysis.SECTION_VERDICTS)
ANALYSIS_FILES = ["metrics/analysis.json", "atlas.json", "atlas_inputs.npz", "report.md", "report.json"] + [
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


def test_a_smoke_run_gives_no_verdict_and_says_so(smoke):
  _, workdir = smoke
  payload = _strict_json(os.path.join(workdir, "metrics", "analysis.json"))
  report_json = _strict_json(os.path.join(workdir, "report.json"))
  assert payload["smoke"] is True and report_json["smoke"] is True
  report = open(os.path.join(workdir, "report.md")).read()
  assert report.startswith("> **No verdicts: smoke run")
  for name in ("or_gates", "coactivation", "superposition_tax", "themes"):
    assert (payload[name]["verdict"], payload[name]["reason"]) == ("cannot be tested", "smoke run"), name
    assert report_json["hypotheses"][name]["verdict"] == "cannot be tested"
  assert all(found["verdict"] == "cannot be tested" for found in payload["themes"]["exist"].values())
  assert "cannot be tested (smoke run)" in report


def test_analysis_json_holds_the_untrained_and_shuffled_latent_nulls(smoke):
  cfg, workdir = smoke
  payload = _strict_json(os.path.join(workdir, "metrics", "analysis.json"))
  main = [r for r in payload["runs"]["squeezer"] if r["stage"] == "squeezer"]
  assert len(main) == cfg.num_seeds * len(cfg.squeezer_k_grid)
  for record in main:
    nulls = record["nulls"]
    assert len(nulls["untrained"]) == cfg.analysis.untrained_squeezers
    for found in nulls["untrained"] + [nulls["shuffled_latents"]]:
      assert set(found) == set(analysis.RULE_RECORDS)
      assert found["or_gates"]["num_roommate_pairs"] >= 0
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "squeezer_shuffled"))
  for entry in payload["or_gates"]["by_squeezer_k"]:
    assert entry["null_untrained_or_prevalence"]["mean"] is not None
    assert entry["null_shuffled_latents_or_prevalence"]["mean"] is not None
    assert set(entry["null"]["nulls"]) == {"permuted_assignment", "random_pairs", "untrained", "shuffled_latents"}
    assert set(entry["vs_nulls"]) == set(entry["null"]["nulls"])
    # The finding is trained minus the strongest null of each seed.
    nulls = [entry[f"null_{name}_or_prevalence"]["per_seed"] for name in ("permuted", "random_pairs", "untrained",
                                                                         "shuffled_latents")]
    expected = [t - max(n[i] for n in nulls) for i, t in enumerate(entry["or_prevalence"]["per_seed"])]
    np.testing.assert_allclose(entry["per_seed"], expected, atol=1e-12)
  assert {"untrained", "shuffled_latents"} <= set(payload["coactivation"]["by_squeezer_k"][0]["null"]["nulls"])


def test_untrained_nulls_are_random_inits_of_the_trained_squeezers_shape(smoke):
  cfg, workdir = smoke
  source = pipeline.make_source(cfg.source)
  folded, sae_cfg, _ = pipeline.load_sae(os.path.join(workdir, "checkpoints", "sae"))
  squeezer_cfg = pipeline.squeezer_config(cfg, source.width)
  untrained = pipeline.untrained_squeezer_states(squeezer_cfg, folded, sae_cfg, cfg.squeezer_loop, source, cfg.seed,
                                                 cfg.num_seeds, 3)
  runs = cfg.num_seeds * len(cfg.squeezer_k_grid)
  assert untrained["params"]["w_enc_NxD"].shape == (3, runs, 16, 64)
  assert np.asarray(untrained["k"]).tolist() == [[2, 2, 4, 4]] * 3
  assert not np.any(np.asarray(untrained["step"]))
  # Every init differs from the others and from the trained Squeezers' own init.
  trained_init = pipeline.squeezer_program(squeezer_cfg, folded, sae_cfg, cfg.squeezer_loop, source).init(
      pipeline.squeezer_keys(cfg.seed, cfg.num_seeds, runs))["squeezer"]
  encoders = [np.asarray(untrained["params"]["w_enc_NxD"][i, 0]) for i in range(3)]
  encoders.append(np.asarray(trained_init["params"]["w_enc_NxD"][0]))
  assert all(not np.allclose(a, b) for i, a in enumerate(encoders) for b in encoders[i + 1:])


def test_shuffled_over_tokens_keeps_every_latent_and_removes_co_firing():
  codes = np.zeros((512, 4), np.float32)
  codes[:256, :2] = np.arange(1, 257)[:, None]           # latents 0 and 1 always fire together
  shuffled = np.asarray(pipeline.shuffled_over_tokens(jax.random.PRNGKey(0), jnp.asarray(codes)))
  for n in range(4):
    np.testing.assert_array_equal(np.sort(shuffled[:, n]), np.sort(codes[:, n]))
  both = np.mean((shuffled[:, 0] > 0) & (shuffled[:, 1] > 0))
  assert abs(both - 0.25) < 0.06   # independent at rate 1/2 each, against 1/2 before


def test_replication_table_tests_each_claim_and_states_the_atlas(smoke):
  _, workdir = smoke
  payload = _strict_json(os.path.join(workdir, "metrics", "analysis.json"))
  rows = payload["replication"]
  assert [r["key"] for r in rows] == [c.key for c in replication.CLAIMS]
  assert all(r["verdict"] == "cannot be tested" for r in rows)
  assert all(r["reason"] == "smoke run" for r in rows if r["key"] in ("or_prevalence", "faithfulness", "tax"))
  for row, claim in zip(rows, replication.CLAIMS):
    assert (row["margin_reason"] is None) == (claim.margin is None)
  report = open(os.path.join(workdir, "report.md")).read()
  assert "## Replication of the earlier claims" in report
  for row in rows:
    assert f"| {row['claim']} | {row['claimed']} | {row['ours']} | {row['margin']} | {verdicts.verdict_text(row)} |" \
        in report
  assert payload["atlas_claim"]["verdict"] is None and "atlas" not in {r["key"] for r in rows}
  assert f"Beside the table, no verdict: \"{replication.ATLAS_CLAIM}\"" in report


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
  report = open(os.path.join(workdir, "report.md")).read()
  pipeline.run_codec(cfg, workdir)
  assert os.path.getmtime(path) == mtime and open(path).read() == before
  # The re-run's report.md, written from the analysis read back from its file, is the first run's line
  # for line (the first run's report used to list the themes' inputs in their computed order, a re-run's
  # in the file's sorted order).
  assert open(os.path.join(workdir, "report.md")).read() == report


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
  assert verdicts.finding([None, float("nan")], +1, None)["verdict"] == "cannot be tested"


# ----------------------------------------------------------------------------- computed verdicts


def test_verdicts_come_out_either_way():
  assert verdicts.finding([0.2, 0.3, 0.25, 0.22, 0.28], +1, 0.0)["verdict"] == "supported"
  assert verdicts.finding([-0.2, -0.3, -0.25, -0.22, -0.28], +1, 0.0)["verdict"] == "contradicted"
  assert verdicts.finding([-0.2, 0.3, 0.0, 0.1, -0.1], +1, 0.0)["verdict"] == "inconclusive"
  few = verdicts.finding([0.2, 0.3, 0.25], +1, 0.0)
  assert (few["verdict"], few["reason"]) == ("cannot be tested", "3 seeds, at least 5 needed")
  smoke = verdicts.finding([0.2, 0.3, 0.25, 0.22, 0.28], +1, 0.0, smoke=True)
  assert (smoke["verdict"], smoke["reason"]) == ("cannot be tested", "smoke run")
  assert verdicts.verdict_text(smoke) == "cannot be tested (smoke run)"


def test_strongest_null_is_the_one_furthest_in_the_predicted_direction():
  nulls = {"a": [0.1, 0.3, None], "b": [0.2, None, None]}
  values, names, _ = verdicts.against_strongest([0.5, 0.5, 0.5], nulls, +1)
  assert values[:2] == pytest.approx([0.3, 0.2]) and values[2] is None and names == ["b", "a", None]
  values, names, _ = verdicts.against_strongest([0.5, 0.5, 0.5], nulls, -1)
  assert values[:2] == pytest.approx([0.4, 0.2]) and values[2] is None and names == ["a", "a", None]


def test_replication_by_equivalence_noise_cannot_make_a_claim_replicate():
  """OR prevalence 21.8% within +-5 points: replicated by values near it, refuted by values clearly outside
  the band, inconclusive when noisy (the old rule, claim inside our CI +- 10%, called noisy values a match)."""
  claim = next(c for c in replication.CLAIMS if c.key == "or_prevalence")
  rng = np.random.default_rng(0)
  test = lambda values, **kw: replication._test(claim, list(values), "", kw.get("smoke", False))  # pylint: disable=protected-access
  assert test(0.22 + 0.005 * rng.standard_normal(5)).verdict == "replicates"
  assert test(0.30 + 0.005 * rng.standard_normal(5)).verdict == "does not replicate"
  assert test(0.26 + 0.1 * rng.standard_normal(5)).verdict == "inconclusive"
  assert test(0.22 + 0.005 * rng.standard_normal(5), smoke=True).verdict == "cannot be tested"
  assert test([]).verdict == "cannot be tested"
  margins = {c.key: c.margin for c in replication.CLAIMS if c.margin is not None}
  assert margins["or_prevalence"].value == 0.05 and margins["dead_features"].value == 0.05
  assert margins["faithfulness"].value == pytest.approx(math.log(1.1))
  assert margins["tax"].value == pytest.approx(math.log(1.2))
  assert all(m.reason for m in margins.values())


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
  assert math.isclose(found["auxk_effect"]["mean"], 0.4)
  assert (found["auxk_effect"]["verdict"], found["auxk_effect"]["reason"]) == (
      "cannot be tested", "2 seeds, at least 5 needed")
  five = {aux_k: np.concatenate([c, c, c[:1]]) for aux_k, c in counts.items()}
  five[8][2] = [0, 0, 20, 50, 50]    # dead fractions off - on: 0.4, 0.4, 0.2, 0.4, 0.4
  assert dead_latents.summarize(cfg, five, num_tokens=100)["auxk_effect"]["verdict"] == "supported"


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



def test_themes_claim_reads_recovery_where_measured_and_existence_otherwise():
  exist = {"decoder": {"per_seed": [0.1] * 5}, "coactivation": {"per_seed": [-0.01] * 5}}
  no_ari = {"ari": None, "verdict": "cannot be tested", "reason": "no ARI"}
  payload = {"primary": {"sae_k": 3}, "themes": {"planted_kinds": ["cofiring"], "exist": exist, "recovery": [
      {"sae_k": 3, "input": "decoder", "adjusted_rand": {"cofiring": no_ari}}]}}
  members, what, _ = replication._theme_members(payload)  # pylint: disable=protected-access
  assert members == {"decoder": [0.1] * 5, "coactivation": [-0.01] * 5} and "shuffled" in what
  payload["themes"]["recovery"][0]["adjusted_rand"]["cofiring"] = {"per_seed": [0.15] * 5}
  members, what, _ = replication._theme_members(payload)  # pylint: disable=protected-access
  assert members == {"decoder -> cofiring": [0.15] * 5} and "ARI" in what

# ----------------------------------------------------------------------------- nulls on planted structure

# Planted OR structure: 64 atoms in 8 co-firing themes, exactly 3 active per token and every token in a theme
# whose members take the slots first. A neuron that holds one theme's atoms fires about as much for two of
# them as for one (the slots are shared), so a Squeezer that learns the themes has OR-gate roommates; one
# that never saw co-firing (shuffled latents) or never trained has no reason to.
PLANTED_OR = ThemeConfig(num_themes=8, theme_probability=1.0, member_probability=0.5)
PLANTED_SEEDS, PLANTED_STEPS, PLANTED_NEURONS = 5, 150, 8


@pytest.fixture(scope="module")
def planted_or():
  """Per seed, OR prevalence of the roommates of a trained, a shuffled-latent and an untrained Squeezer (SAE
  latents = the true codes), with each one's permuted-assignment and random-pair nulls."""
  dictionary = make_dictionary(jax.random.PRNGKey(0), 64, 16)
  sample = jax.jit(lambda key, batch: sample_dictionary_activations(key, batch, dictionary, 3, 0.0, PLANTED_OR)[1],
                   static_argnums=1)
  cfg = sae.SAEConfig(num_latents=PLANTED_NEURONS, k=2, aux_k=0, decoder="dense", b_dec_init="mean")
  init_sample = sample(jax.random.PRNGKey(1), 1024)

  def train(key, shuffle):
    def step(state, t):
      latents = sample(jax.random.fold_in(jax.random.PRNGKey(2), t), 256)
      # The pipeline's shuffled-latent null where `shuffle`.
      latents = jnp.where(shuffle, pipeline.shuffled_over_tokens(jax.random.fold_in(key, t), latents), latents)
      return sae.train_step(state, latents, cfg, PLANTED_STEPS)[0], None
    return jax.lax.scan(step, sae.init_state(key, init_sample, 2, cfg, PLANTED_STEPS), jnp.arange(PLANTED_STEPS))[0]

  keys = jax.random.split(jax.random.PRNGKey(3), PLANTED_SEEDS)
  arms = jax.jit(jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0)))(keys, jnp.asarray([False, True]))
  models = {"trained": jax.tree.map(lambda a: a[0], arms), "shuffled": jax.tree.map(lambda a: a[1], arms),
            "untrained": jax.jit(jax.vmap(lambda key: sae.init_state(jax.random.fold_in(key, 1), init_sample, 2, cfg,
                                                                     PLANTED_STEPS)))(keys)}
  codes = np.asarray(sample(jax.random.PRNGKey(4), 4096))
  neurons_of = jax.jit(jax.vmap(lambda state: sae.dense_codes(sae.apply(state, jnp.asarray(codes), cfg)[1],
                                                               codes.shape[0], PLANTED_NEURONS)))
  live = (codes > 0).any(0)
  settings = rules.RuleSettings(min_count=4)
  encoders = {name: np.asarray(states["params"]["w_enc_NxD"]) for name, states in models.items()}
  padded = rules.padded_size(max(rules.roommate_count(w[s], live) for w in encoders.values()
                                 for s in range(PLANTED_SEEDS)), settings.max_pairs)
  out = {}
  for name, states in models.items():
    neurons = np.asarray(neurons_of(states))
    for s in range(PLANTED_SEEDS):
      rooms = rules.roommates(encoders[name][s], live, settings, padded)
      gates = rules.or_gates(jax.random.PRNGKey(s), neurons[s], codes, rooms, settings)
      for kind, key in ((name, "roommates"), (f"{name} permuted", "null_permuted_assignment"),
                        (f"{name} random pairs", "null_random_pairs")):
        out.setdefault(kind, []).append(gates[key]["prevalence"]["OR"])
  return out


def test_an_untrained_squeezer_passes_the_permuted_null_on_planted_data(planted_or):
  """Why the permuted-assignment null alone is too weak: random weights already make OR-gate roommates."""
  found = verdicts.finding(np.subtract(planted_or["untrained"], planted_or["untrained permuted"]), +1, None)
  assert found["verdict"] == "supported", found


def test_a_trained_squeezer_beats_the_strongest_null_and_a_shuffled_latent_one_does_not(planted_or):
  nulls = {"untrained": planted_or["untrained"], "permuted_assignment": planted_or["trained permuted"],
           "random_pairs": planted_or["trained random pairs"]}
  trained = verdicts.finding(verdicts.against_strongest(planted_or["trained"], nulls, +1)[0], +1, None)
  assert trained["verdict"] == "supported", trained
  shuffled_nulls = dict(nulls, permuted_assignment=planted_or["shuffled permuted"],
                        random_pairs=planted_or["shuffled random pairs"])
  shuffled = verdicts.finding(verdicts.against_strongest(planted_or["shuffled"], shuffled_nulls, +1)[0], +1, None)
  assert shuffled["verdict"] != "supported", shuffled
  assert np.mean(planted_or["trained"]) > np.mean(planted_or["shuffled"]) + 0.2


# ----------------------------------------------------------------------------- themes exist or not


def _theme_records(themes: ThemeConfig, inputs=("decoder", "coactivation")) -> list[dict]:
  """Five seeds of true atoms (the dictionary as decoder and encoder rows, the true codes as SAE codes)
  clustered as the analysis clusters an SAE's atoms."""
  sample = jax.jit(lambda key, dictionary: sample_dictionary_activations(key, 2048, dictionary, 3, 0.01, themes)[1])
  records = []
  for seed in range(5):
    dictionary = make_themed_dictionary(jax.random.PRNGKey(seed), 64, 64, themes)
    codes = np.asarray(sample(jax.random.PRNGKey(100 + seed), dictionary))
    found = rules.themes_of_sae(np.asarray(dictionary), np.asarray(dictionary), codes, (codes > 0).any(0), {},
                                inputs, "spectral", (2, 10), "silhouette", 0, shuffle_seed=(0, seed))
    records.append({"k": 3, "seed_index": seed, "themes": found})
  return records


def test_no_themes_are_found_where_none_are_planted():
  exist = sections.theme_existence(_theme_records(ThemeConfig()), ("decoder", "coactivation"), 3)
  for kind, found in exist.items():
    assert found["themes_found"] == "no themes found", (kind, found)


def test_planted_themes_are_found():
  planted = ThemeConfig(num_themes=8, theme_probability=0.5, member_probability=0.15, direction_cosine=0.5)
  exist = sections.theme_existence(_theme_records(planted), ("decoder", "coactivation"), 3)
  for kind, found in exist.items():
    assert found["verdict"] == "supported" and found["themes_found"].startswith("themes found"), (kind, found)
