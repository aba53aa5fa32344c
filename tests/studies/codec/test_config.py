"""The codec's one config: keys a chosen source does not read are refused, every source's identity enters
the stage fingerprints, the array source reads a user's file, a too-wide Squeezer is named, and a damaged
analysis.json is recomputed."""

import json
import logging
import os
import types

import numpy as np
import pytest

from configs import codec, codec_minilm
from mpcodec.core import configuration
from mpcodec.core.errors import ActivationError, ConfigError
from mpcodec.studies.codec import analysis, atlas, config as codec_config, plots, text_models
from mpcodec.studies.codec.array_source import ArraySource, ArraySourceConfig
from mpcodec.studies.codec.sources import SourceConfig, make_source


def _parse(module, preset="smoke", **overrides):
  return codec_config.parse_codec_config(configuration.override(module.get_config(preset), overrides))


@pytest.mark.parametrize("module, overrides, key", [
    # A text source: the SAE of another run, the ground-truth dead-latent setting, a checkpoint's keys.
    (codec_minilm, {"sae_checkpoint": "/nonexistent"}, "config.sae_checkpoint"),
    (codec_minilm, {"dead_latents.enabled": True}, "config.dead_latents.enabled"),
    (codec_minilm, {"source.workdir": "runs/mono_poly"}, "config.source.workdir"),
    (codec_minilm, {"source.phase": "phase1"}, "config.source.phase"),
    (codec_minilm, {"source.ground_truth.dim": 3}, "config.source.ground_truth.dim"),
    # source.kind='checkpoint' left in a text config: its text keys are not read.
    (codec_minilm, {"source.kind": "checkpoint", "source.workdir": "runs/x"}, "config.source.text.limit"),
    (codec_minilm, {"stages": ("steering",)}, "config.stages"),
    (codec_minilm, {"stages": ("reconstruction", "themes_text", "steering", "detection", "poetry")},
     r"config.stages\[4\]"),
    (codec_minilm, {"source.text.model": "gpt-7"}, "config.source.text.model"),
    # Ground truth: text stages, their knobs and a text source's keys are not read.
    (codec, {"stages": ("reconstruction", "themes_text", "steering", "detection")}, "config.stages"),
    (codec, {"steering.strengths": (1.0,)}, "config.steering.strengths"),
    (codec, {"data.target_class": 2}, "config.data.target_class"),
    (codec, {"source.text.layer": "block_1/residual"}, "config.source.text.layer"),
    (codec, {"source.array.path": "acts.npy"}, "config.source.array.path"),
])
def test_a_key_the_chosen_source_does_not_read_is_refused(module, overrides, key):
  with pytest.raises(ConfigError, match=f"^{key}"):
    _parse(module, **overrides)


def test_a_subset_of_the_text_stages_parses_where_each_stage_has_what_it_reads():
  assert _parse(codec_minilm, "", stages=("themes_text", "detection")).stages == ("themes_text", "detection")
  assert _parse(codec_minilm, "", stages=("reconstruction",), **{"steering.batch_size": 8}).steering.batch_size == 8
  with pytest.raises(ConfigError, match="'detection' reads the themes of 'themes_text'"):
    _parse(codec_minilm, "", stages=("detection",))
  with pytest.raises(ConfigError, match="^config.detection.num_splits: no stage reads it"):
    _parse(codec_minilm, "", stages=("themes_text",), **{"detection.num_splits": 3})


def test_the_configs_as_shipped_parse():
  assert _parse(codec_minilm, "").source.kind == "text" and _parse(codec_minilm).stages == text_models.TEXT_STAGES
  assert _parse(codec, "").source.kind == "ground_truth" and _parse(codec).stages == ()


def test_every_source_identity_enters_the_fingerprints_and_file_locations_do_not():
  cfg = _parse(codec_minilm)
  one, other = {"model": "a" * 64}, {"model": "b" * 64}
  assert codec_config.sae_training_config(cfg, one) != codec_config.sae_training_config(cfg, other)
  squeezer_config = codec_config.squeezer_training_config
  assert squeezer_config(cfg, None, one) != squeezer_config(cfg, None, other)
  moved = _parse(codec_minilm, **{"source.text.data_dir": "/elsewhere", "source.text.model_dir": "/m",
                                  "source.text.cache_dir": "/c"})
  assert codec_config.sae_training_config(moved, one) == codec_config.sae_training_config(cfg, one)
  layer = _parse(codec_minilm, **{"source.text.layer": "block_1/ffn_hidden"})
  assert codec_config.sae_training_config(layer, one) != codec_config.sae_training_config(cfg, one)
  # The downstream stages train nothing the codec's stages depend on.
  steered = _parse(codec_minilm, **{"steering.strengths": (1.0, 2.0)})
  assert codec_config.squeezer_training_config(steered, None, one) == codec_config.squeezer_training_config(
      cfg, None, one)


def test_a_squeezer_as_wide_as_the_sae_is_named_in_one_warning(caplog):
  cfg = _parse(codec, **{"squeezer.num_neurons": 64, "tax_width_factors": (8.0,), "sae.num_latents": 64})
  with caplog.at_level(logging.WARNING):
    codec_config.check_against_width(cfg, 16)
  lines = [r.getMessage() for r in caplog.records if "compresses nothing" in r.getMessage()]
  assert len(lines) == 1 and "M=[64, 128]" in lines[0] and "config.sae.num_latents" in lines[0]
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    codec_config.check_against_width(_parse(codec), 16)
  assert not [r for r in caplog.records if "compresses nothing" in r.getMessage()]


def _write_array(tmp_path, rows=50, width=6, tokens=True):
  acts = np.random.default_rng(0).normal(size=(rows, width)).astype(np.float32)
  np.save(tmp_path / "acts.npy", acts)
  if tokens:
    np.savez(tmp_path / "tokens.npz", doc_index=np.arange(rows) // 5, position=np.arange(rows) % 5)
  return acts


def test_the_array_source_streams_the_file_rows_in_a_per_epoch_permutation(tmp_path):
  acts = _write_array(tmp_path)
  cfg = SourceConfig(kind="array", array=ArraySourceConfig(path=str(tmp_path / "acts.npy"),
                                                           tokens=str(tmp_path / "tokens.npz"), layer="mlp.hook"))
  source = make_source(cfg)
  assert (source.width, source.num_tokens, source.hook_name) == (6, 50, "mlp.hook")
  stream = source.batches(20, 0)
  rows = np.concatenate([next(stream) for _ in range(5)])   # two epochs and a half
  np.testing.assert_array_equal(np.sort(rows[:50], axis=0), np.sort(acts, axis=0))   # epoch 0: every row once
  np.testing.assert_array_equal(rows[:20], acts[source.indices(0, 20)])
  np.testing.assert_array_equal(next(source.batches(20, 3)), rows[60:80])   # a batch is a function of its step
  # The identity follows the file's contents, not its name.
  np.save(tmp_path / "acts.npy", acts + 1.0)
  assert ArraySource(cfg.array).identity != source.identity
  np.save(tmp_path / "copy.npy", acts)
  copy = ArraySource(ArraySourceConfig(path=str(tmp_path / "copy.npy"), tokens=str(tmp_path / "tokens.npz")))
  assert copy.identity == source.identity


def test_an_atlas_on_an_array_names_the_file_row_and_token_metadata_of_each_top_input(tmp_path):
  _write_array(tmp_path)
  source = ArraySource(ArraySourceConfig(path=str(tmp_path / "acts.npy"), tokens=str(tmp_path / "tokens.npz")))
  window = types.SimpleNamespace(batch_size=8, step_B=np.repeat([11, 12], 8), row_B=np.tile(np.arange(8), 2))
  batches = atlas._Batches(source, window)  # pylint: disable=protected-access
  rows = [batches.source_row(t) for t in range(16)]
  assert rows == source.indices(11, 8).tolist() + source.indices(12, 8).tolist()
  found = source.row_metadata(rows[:3])
  assert found == [{"row": r, "doc_index": r // 5, "position": r % 5} for r in rows[:3]]


@pytest.mark.parametrize("damage, message", [
    ("missing", "config.source.array.path: no file"),
    ("3d", r"expected \(N tokens, D units\)"),
    ("ints", "expected floats"),
    ("short_tokens", "config.source.array.tokens: doc_index"),
    ("unknown_tokens", r"config.source.array.tokens: .* holds \['colour'\]"),
])
def test_a_bad_array_file_is_named_in_one_line(tmp_path, damage, message):
  _write_array(tmp_path, tokens=False)
  path, tokens = tmp_path / "acts.npy", ""
  if damage == "missing":
    path = tmp_path / "none.npy"
  elif damage == "3d":
    np.save(path, np.zeros((2, 3, 4), np.float32))
  elif damage == "ints":
    np.save(path, np.zeros((5, 3), np.int32))
  elif damage == "short_tokens":
    np.savez(tmp_path / "tokens.npz", doc_index=np.arange(7))
    tokens = str(tmp_path / "tokens.npz")
  else:
    np.savez(tmp_path / "tokens.npz", colour=np.arange(50))
    tokens = str(tmp_path / "tokens.npz")
  with pytest.raises(ActivationError, match=message):
    ArraySource(ArraySourceConfig(path=str(path), tokens=tokens))


def test_a_damaged_analysis_json_is_recomputed_with_one_log_line(tmp_path, caplog):
  """A truncated analysis.json (an interrupted copy, a full disk) is not a finished analysis: it is
  recomputed, with one warning naming the file, where reading it used to raise a JSONDecodeError."""
  (tmp_path / "metrics").mkdir()
  (tmp_path / "plots").mkdir()
  (tmp_path / "atlas.json").write_text("{}")
  for name in plots.PLOT_FILES:
    (tmp_path / "plots" / name).write_bytes(b"")
  path = tmp_path / "metrics" / "analysis.json"
  fingerprint = {"inputs": {"seed": 0}}
  path.write_text(json.dumps({"fingerprint": fingerprint, "or_gates": {}}))
  finished = analysis._finished  # pylint: disable=protected-access
  assert finished(str(tmp_path), str(path), fingerprint) == {"fingerprint": fingerprint, "or_gates": {}}
  text = path.read_text()
  path.write_text(text[:len(text) // 2])
  with caplog.at_level(logging.WARNING):
    assert finished(str(tmp_path), str(path), fingerprint) is None
  lines = [r.getMessage() for r in caplog.records if "analysis.json" in r.getMessage()]
  assert len(lines) == 1 and "recomputing it" in lines[0] and os.fspath(path) in lines[0]
