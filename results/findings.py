"""Writes results/README.md, the findings page, from the published results/<study>/report.json and run.json.

  python -m results.findings            # rewrite the page
  python -m results.findings --check    # exit 1 when the page differs from what the JSON gives

Every number on the page is read from those files; the prose around them (each study's question, how its
design limits what it can show) is fixed text. A study whose folder is missing gets a "not yet run" entry
with the command that would produce it. SCHEMA lists, per study, the keys of report.json the page reads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from results.sections import (codec_section, codec_text_section, cost_lines, dynamics_cost_note, dynamics_section,
                              minutes, mono_poly_section, toy_superposition_section, verdict_summary)

RESULTS_DIR = os.path.dirname(os.path.abspath(__file__))
PAGE = "README.md"

# The keys the page reads, as paths into report.json ("a.b.c"; "*" = every key of a mapping).
SCHEMA: dict[str, tuple[str, ...]] = {
    "mono_poly": (
        "smoke", "design.num_seeds", "design.data_per_seed", "design.control_arm", "design.no_verdict_reason",
        "summary.label_counts", "summary.phase2 test accuracy, mean over seeds",
        "summary.phase2 test accuracy, lowest seed",
        *(f"hypotheses.{h}.{key}" for h in ("H1", "H2", "H3") for key in (
            "claim", "unit", "expected_sign", "verdict", "num_seeds_excluded", "arms.xor.estimate",
            "arms.xor.low", "arms.xor.high", "arms.xor.k_of_n", "arms.xor.n", "arms.control.estimate",
            "arms.control.low", "arms.control.high", "test.estimate", "test.low", "test.high", "test.k_of_n",
            "test.n", "test.cohens_dz", "test.p_value", "test.p_adjusted"))),
    "toy_superposition": (
        "config.num_seeds", "config.train.num_restarts", "config.train.num_features", "config.train.hidden_dim", "config.pentagon_sparsity",
        "config.privileged_basis.train.num_features", "config.privileged_basis.train.hidden_dim",
        "pentagon.num_seeds_regular_polygon", "pentagon.expected_feature_dimensionality",
        "pentagon.feature_dimensionality", "pentagon.angle_gaps_degrees", "dense.num_seeds_exactly_top_m",
        "phase_diagram.rows", "privileged_basis.num_seeds_densest_monosemantic_top_m",
        *(f"privileged_basis.features_per_neuron_trend.{key}" for key in (
            "densest_sparsity", "sparsest_sparsity", "densest_per_seed", "sparsest_per_seed",
            "num_seeds_higher_when_sparsest", "mean_is_monotone_in_sparsity", "peak_sparsity", "peak_mean"))),
    "codec_ground_truth": (
        "smoke", "num_seeds", "no_verdict_reason", "hypotheses", "replication", "themes_found", "atlas"),
    "dynamics": ("smoke", "runs", "primary_measure", "exclusions.num_diverged_runs", "exclusions.num_excluded_seeds",
                 "hypotheses", "replication", *(f"detector_validity.bars.{key}" for key in (
                     "passed", "false_positive_bar_per_1000", "false_positives_per_1000_max_on_nulls",
                     "recall_white_min_at_2sd_and_more", "recall_bar"))),
    **{key: ("smoke", "num_seeds", "no_verdict_reason", "hypotheses", "replication", "codec.hypotheses",
             "codec.replication", "codec.themes_found", "codec.atlas") for key in ("codec_minilm", "codec_smollm2")},
}
# Keys every row of a list in report.json must have: {study: {path of the list: row keys}}.
ROW_SCHEMA: dict[str, dict[str, tuple[str, ...]]] = {
    "codec_ground_truth": {"replication": ("key", "claim", "claimed", "ours", "margin", "verdict", "reason")},
    "toy_superposition": {"phase_diagram.rows": ("feature_density", "relative_importance", "majority_class")},
    "dynamics": {"runs": ("run", "family"),
                 "hypotheses": ("name", "estimate", "low", "high", "p_value", "p_adjusted", "verdict", "reason"),
                 "replication": ("claim", "claimed", "result", "ci_low", "ci_high", "confidence", "num_seeds",
                                 "margin", "margin_kind", "verdict", "reason")},
    **{key: {"replication": ("key", "claim", "claimed", "ours", "margin", "verdict", "reason"),
             "codec.replication": ("key", "claim", "claimed", "ours", "margin", "verdict", "reason")}
       for key in ("codec_minilm", "codec_smollm2")},
}
RUN_SCHEMA = ("command", "commit", "dirty", "machine.cpu_model", "machine.logical_cores", "wall_time_s")


def lookup(payload: Any, path: str) -> Any:
  """payload["a"]["b"]... for path "a.b"; KeyError naming the missing part."""
  value = payload
  for part in path.split("."):
    if not isinstance(value, Mapping) or part not in value:
      raise KeyError(path)
    value = value[part]
  return value


def missing_keys(report: Mapping[str, Any], study: str) -> list[str]:
  """The SCHEMA paths of `study` that `report` lacks."""
  out = []
  for path in SCHEMA[study]:
    try:
      lookup(report, path)
    except KeyError:
      out.append(path)
  for path, keys in ROW_SCHEMA.get(study, {}).items():
    try:
      rows = lookup(report, path)
    except KeyError:
      continue
    for i, row in enumerate(rows):
      out += [f"{path}[{i}].{key}" for key in keys if not isinstance(row, Mapping) or key not in row]
  return out


def missing_run_keys(run: Mapping[str, Any]) -> list[str]:
  out = []
  for path in RUN_SCHEMA:
    try:
      lookup(run, path)
    except KeyError:
      out.append(path)
  return out


def not_run(entry: "Entry", results_dir: str = RESULTS_DIR) -> list[str]:
  lines = ["**Not yet run.** No reference run of this study is published here."]
  if entry.command:
    lines.append(f"The command that would produce it: `{entry.command}`; then publish it with "
                 f"`python -m results.publish --study={entry.key} --workdir=runs/{entry.key} --time_log=... -- "
                 "<the command>`.")
  if entry.pending:
    lines.append(entry.pending)
  cost_path = os.path.join(results_dir, entry.key, "cost.json")
  if os.path.isfile(cost_path):
    with open(cost_path) as f:
      cost = json.load(f)
    lines += ["", "What parts of it cost, measured (`cost.json`):", ""]
    for part in cost["parts"]:
      lines += [line.replace("- **Cost**", "- **Cost of a part**", 1) for line in cost_lines(part, "cost.json")]
      if entry.cost_note:
        lines.append(entry.cost_note(part))
  return lines


class Entry:
  """One study on the page: its folder, heading, question, the command that produces it, its renderer."""

  def __init__(self, key: str, title: str, question: str, command: str,
               render: Callable[..., list[str]] | None, pending: str = "",
               cost_note: Callable[[Mapping[str, Any]], str] | None = None):
    self.key, self.title, self.question, self.command = key, title, question, command
    self.render, self.pending, self.cost_note = render, pending, cost_note


ENTRIES = (
    Entry("mono_poly", "Mono → poly",
          "When a small network that learnt bar orientation is retrained on orientation XOR colour, do the "
          "neurons that become polysemantic differ from those that stay monosemantic (H1 higher weight "
          "entropy, H2 larger incoming-weight norm), and do the neurons' weight vectors draw together (H3)?",
          "python -m launch.mono_poly --config=configs/mono_poly.py --workdir=runs/mono_poly",
          mono_poly_section),
    Entry("toy_superposition", "Toy models of superposition",
          "Do the toy models of Elhage et al. (2022) trained here reach the geometry that paper reports: the "
          "pentagon, dense features kept by importance, the n = 2, m = 1 phase diagram, and neurons that "
          "turn polysemantic as features get sparser when the hidden layer has a ReLU?",
          "python -m launch.toy_superposition --config=configs/toy_superposition.py "
          "--workdir=runs/toy_superposition", toy_superposition_section),
    Entry("codec_ground_truth", "The neural codec on ground truth",
          "Where the true atoms are known, does the codec (a Top-K SAE, then the Squeezer into M synthetic "
          "neurons) find the compression rules the earlier work reported: OR-gates among neurons' roommate "
          "atoms, lower co-activation of roommates, a superposition tax, themes, faithful re-compression?",
          "python -m launch.codec --config=configs/codec.py --workdir=runs/codec_ground_truth", codec_section),
    Entry("dynamics", "Training dynamics (55-run grid)",
          "How does each layer's effective dimensionality evolve over training across an MLP / CNN / "
          "Transformer zoo on four datasets: when do layers settle, how many jumps, are there critical "
          "periods, and do the earlier repository's figures replicate?",
          "python -m launch.dynamics --config=configs/dynamics.py --workdir=runs/dynamics --shard=I/8 "
          "--data_dir=../shared/data", dynamics_section,
          pending="Run it for I = 1..8, one part at a time (the series are deterministic, so the parts fit "
                  "together): copy `results/dynamics/dynamics/` (the finished parts' series, the grid's config "
                  "and its shard plan) into `runs/dynamics/dynamics/` first, and publish each part with "
                  "`python -m results.publish --study=dynamics --cost_only --workdir=runs/dynamics ...`; "
                  "then `python -m launch.dynamics_analysis --workdir=runs/dynamics`. The grid's "
                  "configurations differ in size (its larger Transformers cost far more per step than its MLPs), "
                  "so a timed part below does not scale to the grid by the number of configurations.",
          cost_note=dynamics_cost_note),
    Entry("codec_minilm", "The neural codec on MiniLM",
          "On the FFN of a real sentence encoder (all-MiniLM-L6-v2) over AG News: does the Validation "
          "Hypothesis hold, do OR-gates appear, do theme vectors steer and detect a news class as the "
          "earlier work reported?",
          "python -m launch.codec --config=configs/codec_minilm.py:reduced --workdir=runs/codec_minilm "
          "--data_dir=../shared/data", codec_text_section),
    Entry("codec_smollm2", "The neural codec on SmolLM2",
          "The same questions on a causal language model (SmolLM2-135M-Instruct, block 15's FFN neurons): the "
          "compression rules on its own neurons, the loss recovered when the SAE is spliced in, and the "
          "earlier work's generative-steering and guardrail claims in their own terms.",
          "python -m launch.codec --config=configs/codec_smollm2.py:reduced --workdir=runs/codec_smollm2 "
          "--data_dir=../shared/data", codec_text_section),
)


def read_study(key: str, results_dir: str = RESULTS_DIR) -> tuple[dict, dict, dict] | None:
  """(report.json, run.json, config.json) of a published study, None when its folder holds none of them."""
  folder = os.path.join(results_dir, key)
  paths = [os.path.join(folder, name) for name in ("report.json", "run.json", "config.json")]
  if not any(os.path.exists(p) for p in paths):
    return None
  loaded = []
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{key}/{os.path.basename(path)} is missing (republish with results.publish)")
    with open(path) as f:
      loaded.append(json.load(f))
  report, run, config = loaded
  problems = [f"report.json: {k}" for k in missing_keys(report, key)] + [
      f"run.json: {k}" for k in missing_run_keys(run)]
  if problems:
    raise KeyError(f"{key}: missing {', '.join(problems)}")
  return report, run, config


def render_page(results_dir: str = RESULTS_DIR) -> str:
  """The whole findings page."""
  lines = ["# What we found", "",
           "Each study's reference run, published in its folder here: `report.md` (the full report with its "
           "replication table), `report.json`, key plots, `config.json` (the resolved config) and `run.json` "
           "(the command, the git commit, the machine and the wall time). This page is written by "
           "`python -m results.findings` from those JSON files; no number on it is typed in. Verdicts follow "
           "[docs/replication.md](../docs/replication.md): Student t intervals over seeds, Holm within a "
           "family, at least 5 seeds, replication by equivalence within declared margins.", "",
           "| study | status | what it found | wall time |", "|---|---|---|---|"]
  loaded = {entry.key: read_study(entry.key, results_dir) for entry in ENTRIES}
  for entry in ENTRIES:
    data = loaded[entry.key]
    status = "not yet run" if data is None else (
        "smoke run (no verdicts)" if data[0].get("smoke") else
        "reference run, reduced (see its section)" if "reduced" in data[1].get("note", "") else "reference run")
    wall = "—" if data is None else minutes(data[1]["wall_time_s"] + data[1].get("earlier_stages_wall_time_s", 0))
    found = "—" if data is None else verdict_summary(entry.key, data[0])
    lines.append(f"| [{entry.title}](#{anchor(entry.title)}) | {status} | {found} | {wall} |")
  lines.append("")
  for entry in ENTRIES:
    data = loaded[entry.key]
    lines += [f"## {entry.title}", "", f"**Question.** {entry.question}", ""]
    if data is None or entry.render is None:
      lines += not_run(entry, results_dir)
    else:
      lines += [f"Folder: [{entry.key}/]({entry.key}/) ([report]({entry.key}/report.md)).", ""]
      lines += entry.render(*data)
    lines.append("")
  return "\n".join(lines).rstrip("\n") + "\n"


def anchor(title: str) -> str:
  """GitHub's heading anchor: lower case, spaces to '-', punctuation other than '-' dropped."""
  kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
  return kept.replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true", help="compare with the committed page; write nothing")
  args = parser.parse_args(argv)
  try:
    text = render_page(RESULTS_DIR)
  except (KeyError, FileNotFoundError) as e:
    print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
    return 1
  path = os.path.join(RESULTS_DIR, PAGE)
  if args.check:
    current = open(path).read() if os.path.exists(path) else ""
    if current != text:
      print(f"error: {PAGE} differs from what the published JSON gives; run python -m results.findings",
            file=sys.stderr)
      return 1
    return 0
  with open(path, "w") as f:
    f.write(text)
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
