"""The codec launch as one function: validate, hold the workdir, train the SAE then the Squeezer, report."""

from __future__ import annotations

from typing import Any

from absl import logging

from mpcodec.core import progress, workdir as workdir_lib
from mpcodec.studies.codec import minilm_study, pipeline


def main(raw_config: Any, workdir: str, overwrite: bool = False) -> dict[str, Any]:
  """Trains (or resumes, or skips the finished stages of) the codec run in `workdir`; returns its payload.

  Every config key is checked and the workdir proven writable before anything compiles; a second process
  on the same workdir is refused. A config with `study = "minilm"` (configs/codec_minilm.py) runs the
  codec on MiniLM instead (`minilm_study.run`).
  """
  if raw_config.get("study") == "minilm":
    return minilm_study.run(raw_config, workdir, overwrite=overwrite)
  cfg = pipeline.parse_codec_config(raw_config)
  with workdir_lib.locked(workdir):
    squeezer_stages = 2 if cfg.shuffled_latent_squeezer else 1   # the main Squeezer and its shuffled-latent null
    total = (0 if cfg.sae_checkpoint else cfg.sae_loop.steps) + squeezer_stages * cfg.squeezer_loop.steps
    with progress.bar(total, "codec (SAE, then Squeezer)") as bar:
      payload = pipeline.run_codec(cfg, workdir, progress=bar, overwrite=overwrite)
    logging.info("outputs in %s", workdir)
  return payload
