"""report.md's generative-steering section and plots/generation.png, read from metrics/generation.json's
payload (`generation_stage.run`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mpcodec.core import io
from mpcodec.studies.codec import generation_stage, text_claims

PANELS = (("p_target_steered", "target mass (neutral lines)"), ("kl", "KL(unsteered ‖ steered) (nats)"),
          ("continuation_perplexity", "perplexity of continuations\nunder the unsteered model"))


def _ci(cell: Mapping[str, Any]) -> str:
  return text_claims.interval_text(cell, ".4g")


def markdown(payload: Mapping[str, Any] | None) -> list[str]:
  """The "Generative steering" section: per topic its theme, target tokens, a table per method and strength
  and greedy continuations at three strengths."""
  title = "## Generative steering"
  if payload is None:
    return [title, "", "Not run (`generation` is not in `config.stages`).", ""]
  strengths, ref = payload["strengths"], payload["reference_strength"]
  lines = [title, "",
           f"At `{payload['layer']}`, norm-matched (α × the local activation norm), on "
           f"{payload['num_neutral_texts']} neutral Shakespeare lines: next-token target mass and KL against the "
           f"unsteered model; {payload['gen_tokens']}-token greedy continuations of "
           f"{len(payload['prompts'])} prompts scored by the unsteered model (every method for the target topic; "
           "the theme's samples for the others). Mean over SAE seeds [95% t interval]. "
           f"Claims are read for {payload['target_class']} at α = {ref:g}. plots/generation.png; "
           "metrics/generation.json.", ""]
  for topic in payload["topics"]:
    theme = topic["themes"][0]
    profile = ", ".join(f"{v:.3g}" for v in theme["mean_by_topic"])
    lines += [f"### {topic['topic']}", "",
              f"Theme {theme['theme']} of seed {theme['seed_index']} ({theme['size']} atoms; top tokens: "
              f"{', '.join(repr(t) for t in theme['top_tokens'][:8])}; mean activation per topic: {profile}). "
              f"Target tokens (fixed from held-out documents before steering): "
              f"{', '.join(repr(t) for t in topic['target_tokens'][:12])}.", "",
              "| method | α | target mass unsteered | steered | KL | continuation perplexity |",
              "|---|---|---|---|---|---|"]
    for method, table in topic["table"].items():
      for a, alpha in enumerate(strengths):
        lines.append(f"| {method} | {alpha:g} | {_ci(table['p_target_clean'][a])} | "
                     f"{_ci(table['p_target_steered'][a])} | {_ci(table['kl'][a])} | "
                     f"{_ci(table['continuation_perplexity'][a])} |")
    lines += ["", "Greedy continuations with the theme vector (seed 0):", ""]
    for a in generation_stage.sample_strengths(strengths, ref):
      for prompt, text in zip(payload["prompts"], topic["samples"].get(a, topic["samples"].get(str(a), []))):
        lines.append(f"- α = {strengths[a]:g}: {prompt!r} → {text!r}")
    lines.append("")
  lines += ["Unsteered continuations: " + "; ".join(f"{p!r} → {t!r}" for p, t in
                                                    zip(payload["prompts"], payload["unsteered_continuations"])), ""]
  return lines


def plot(payload: Mapping[str, Any], path: str) -> None:
  """Target mass, KL and continuation perplexity against α for every method, one row per topic."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  strengths, topics = payload["strengths"], payload["topics"]
  fig, axes = plt.subplots(len(topics), len(PANELS), figsize=(4.2 * len(PANELS), 3.0 * len(topics)),
                           layout="constrained", squeeze=False)
  for row, topic in zip(axes, topics):
    for ax, (metric, label) in zip(row, PANELS):
      for method, table in topic["table"].items():
        means = np.asarray([c["mean"] if c["mean"] is not None else np.nan for c in table[metric]], float)
        ax.plot(strengths, means, marker="o", label=method)
      if metric == "p_target_steered":
        clean = topic["table"]["theme"]["p_target_clean"][0]["mean"]
        if clean is not None:
          ax.axhline(clean, color="grey", linestyle=":", label="unsteered")
      ax.axvline(payload["reference_strength"], color="black", linewidth=0.8, alpha=0.4)
      ax.set_xlabel("strength α (fraction of the activation norm)")
      ax.set_ylabel(label, fontsize=8)
      ax.set_title(topic["topic"], fontsize=9)
      ax.legend(fontsize=7)
  fig.suptitle("Generative steering: mean over SAE seeds", fontsize=10)
  io.save_figure(fig, path)
