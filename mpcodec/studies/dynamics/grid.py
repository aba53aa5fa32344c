"""The grid's vocabulary: model families, the measures and per-update series, how runs are named,
chosen and ordered (`arch@dataset`)."""

from __future__ import annotations

from collections.abc import Sequence

from mpcodec.metrics import dimensionality

MEASURE_NAMES = dimensionality.MEASURE_NAMES
STEP_SERIES = ("batch_loss", "grad_norm")
FAMILIES = ("mlp", "cnn", "transformer")


def family_of(arch: str) -> str:
  """'mlp', 'cnn' or 'transformer' from the architecture name's prefix."""
  return arch.split("_", 1)[0]


def select_runs(runs: tuple[str, ...], archs: str = "", datasets: str = "") -> tuple[str, ...]:
  """Runs whose arch / dataset is in the comma- or '+'-separated lists (empty list = all)."""
  def names(text):
    return {n for n in text.replace("+", ",").split(",") if n}
  wanted_archs, wanted_datasets = names(archs), names(datasets)
  selected = tuple(r for r in runs
                   if (not wanted_archs or r.partition("@")[0] in wanted_archs)
                   and (not wanted_datasets or r.partition("@")[2] in wanted_datasets))
  return selected


def training_order(runs: Sequence[str]) -> list[str]:
  """The order runs train in: by architecture, then dataset, so one architecture's compiled programs are
  reused by its runs one after another."""
  return sorted(runs, key=lambda r: (r.partition("@")[0], r.partition("@")[2]))
