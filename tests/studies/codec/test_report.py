"""The codec report's convergence check: planted training histories that have settled, that still fall, and
whose dead fraction still climbs."""

import numpy as np

from mpcodec.studies.codec import report

LABELS = [{"k": 8, "seed_index": 0}, {"k": 8, "seed_index": 1}, {"k": 8, "seed_index": 2}]


def _history(steps=500):
  t = np.arange(steps, dtype=np.float64)
  settled = 0.2 + 0.8 * np.exp(-t / 30.0)             # flat long before the last 40% of the steps
  falling = 1.0 - 0.0015 * t                          # still falling ~15% per window at the end
  fvu = np.stack([settled, falling, settled], axis=1)
  dead = np.zeros_like(fvu)
  dead[:, 2] = np.clip((t - 300) / 1000.0, 0, None)   # the third run's latents keep dying: +0.1 per window
  return {"fvu": fvu, "dead_fraction": dead, "loss": fvu}


def test_settled_falling_and_dying_runs_are_told_apart():
  payload = report.convergence(_history(), LABELS)
  assert [row["converged"] for row in payload["runs"]] == [True, False, False]
  falling = payload["runs"][1]
  # Independent arithmetic: mean over steps 400..499 against 300..399 of 1 - 0.0015 t.
  expected = ((1 - 0.0015 * 449.5) - (1 - 0.0015 * 349.5)) / (1 - 0.0015 * 349.5)
  assert np.isclose(falling["fvu_relative_change"], expected)
  assert np.isclose(payload["runs"][2]["dead_fraction_change"], (499 - 300) / 1000 - (399 - 300) / 1000)
  assert not payload["converged_in_every_run"]
  lines = report._convergence_line("SAE", payload)
  assert lines[0].startswith("**SAE training had not converged in 2 of 3 runs**")


def test_every_settled_run_gives_one_plain_line_and_short_or_absent_histories_none():
  history = _history()
  history = {name: values[:, [0]] for name, values in history.items()}
  payload = report.convergence(history, LABELS[:1])
  assert payload["converged_in_every_run"]
  assert report._convergence_line("SAE", payload)[0].startswith("Training had converged in every run")
  assert report.convergence(None, LABELS) is None
  assert report.convergence({"fvu": np.ones((5, 3))}, LABELS) is None
