"""The codec launch as one function: validate, hold the workdir, run the codec's one flow."""

from __future__ import annotations

from typing import Any

from mpcodec.core import workdir as workdir_lib
from mpcodec.studies.codec import config as codec_config, pipeline


def main(raw_config: Any, workdir: str, overwrite: bool = False) -> dict[str, Any]:
  """Trains (or resumes, or skips the finished stages of) the codec run in `workdir`; returns its payloads
  (sae, squeezer, analysis, report; with text stages also reconstruction, themes, steering, detection,
  claims and hypotheses).

  Every config key is checked (a key the chosen source does not read is refused) before anything
  compiles; a bad source (model directory, layer, corpus, file) stops before any training; a second
  process on the same workdir is refused. Every source, configs/codec_minilm.py's text source included,
  runs through `pipeline.run_codec`.
  """
  cfg = codec_config.parse_codec_config(raw_config)
  with workdir_lib.locked(workdir):
    result = pipeline.run_codec(cfg, workdir, overwrite=overwrite)
  return dict(result.outputs, **(result.text.payloads if result.text is not None else {}))
