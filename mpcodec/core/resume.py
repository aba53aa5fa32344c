"""Where a run resumes: checkpoints of another config are refused (or removed with `overwrite`), and the
resume point is the latest checkpoint before the first planned one that is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from absl import logging

from mpcodec.core import sharding
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import WorkdirError
from mpcodec.core.program import Program


def _differing_keys(a: Any, b: Any, prefix: str = "config") -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b)):
      out += _differing_keys(a.get(k), b.get(k), f"{prefix}.{k}")
    return out
  return [] if a == b else [prefix]


def check_checkpoints(root: str, phase_names: Sequence[str], config: Mapping, overwrite: bool,
                      what: str, outputs: Sequence[str] = ()) -> None:
  """Refuses checkpoints of these phases under `root` written with another training config (with
  `overwrite`: removes `outputs`, the files and folders derived from them, first, so a crash after it
  never leaves an old report beside new checkpoints, then the phases' checkpoints). Every phase's latest
  checkpoint is compared."""
  if not os.path.isdir(root):
    return
  for name in phase_names:
    if not os.path.isdir(os.path.join(root, name)):
      continue
    store = CheckpointStore(os.path.join(root, name))
    for step in store.all_steps()[-1:]:
      saved = store.restore_metadata(step).get("config")
      if saved == config:
        continue
      if overwrite:
        store.close()
        # Several processes: every one has read the checkpoints before process 0 alone removes them.
        sharding.barrier("mpcodec.loop: overwrite read")
        if jax.process_index() == 0:
          for output in outputs:
            if os.path.isdir(output) and not os.path.islink(output):
              shutil.rmtree(output, ignore_errors=True)
            elif os.path.lexists(output):
              os.remove(output)
          for other in phase_names:
            logging.warning("--overwrite: removing checkpoints of a different config in %s",
                            os.path.join(root, other))
            shutil.rmtree(os.path.join(root, other), ignore_errors=True)
        sharding.barrier("mpcodec.loop: overwrite done")
        return
      differing = _differing_keys(saved or {}, dict(config))
      raise WorkdirError(
          f"{what} holds checkpoints ({name} step {step}) written with a different config (differs at: "
          f"{', '.join(differing[:5]) or 'structure'}); use another --workdir or pass --overwrite")



def resume_point(program: Program, stores: Mapping[str, CheckpointStore]) -> tuple[int, int]:
  """(phase index, step) to resume from: the latest checkpoint before the first one missing.

  A run is finished only when every checkpoint step of every phase is in place. When a step is missing
  (deleted after a corruption, as the error advises) while later ones exist, the run resumes from the last
  checkpoint before the gap, and the later ones (which the resumed run writes again, bit for bit) are
  removed, so the history and every analysed step come from one unbroken run.
  """
  resume, gap = (0, 0), None
  for index, phase in enumerate(program.phases):
    present = stores[phase.name].all_steps()
    expected = [0] + [end for _, end in phase.boundaries(0) if phase.is_checkpoint_step(end)]
    missing = next((step for step in expected if step not in present), None)
    usable = [step for step in present if missing is None or step < missing]
    if usable:
      resume = (index, usable[-1])
    if missing is not None:
      gap = (index, missing)
      break
  if gap is None:
    return resume
  later = [(phase.name, step) for index, phase in enumerate(program.phases) if index >= gap[0]
           for step in stores[phase.name].all_steps()
           if index > resume[0] or step > resume[1]]
  if later:
    resume_phase = program.phases[resume[0]].name
    logging.warning("%s: checkpoint %s step %d is missing while %d later ones exist: resuming from %s step %d "
                    "and writing the later ones again", program.study, program.phases[gap[0]].name, gap[1],
                    len(later), resume_phase, resume[1])
    for index in range(resume[0], len(program.phases)):
      stores[program.phases[index].name].delete_after(resume[1] if index == resume[0] else -1)
  return resume
