"""The `splice` stage of a causal LM: the SAE's splicing cost as SAELens reports it, cross-entropy loss
recovered (`smollm2_splice`), per SAE seed, on two held-out sets: AG News documents the probes and
theme choices never saw (`data.splice_items`, evenly spread over the held-out ones) and neutral Shakespeare
lines (`steering.neutral_items` of them, the neutral set of the generation stage).

metrics/splice.json holds, per set, the clean and zero-ablated cross-entropy (shared by the seeds), each
seed's spliced cross-entropy and loss recovered, and a Student t interval over seeds; `markdown` gives
report.md's section. Only a model with a next-token loss supports it (text_models: SmolLM2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mpcodec.studies.codec import smollm2_splice, text_claims

SET_TITLES = {"ag_news_held_out": "held-out AG News documents", "shakespeare": "neutral Shakespeare lines"}


def run(model: Any, layer: str, max_length: int, batch_size: int, sets: Mapping[str, Sequence[str]],
        sae_states: Any, sae_cfg: Any, seed_indices: Sequence[int]) -> dict[str, Any]:
  """metrics/splice.json: per set of texts, clean / zero-ablated / each seed's spliced loss and recovered."""
  reconstructions = smollm2_splice.sae_reconstructions(sae_states, sae_cfg)
  out: dict[str, Any] = {"layer": layer, "seed_indices": list(seed_indices), "sets": {},
                         "definition": "mean next-token cross-entropy (nats) over every predicted token; "
                                       "recovered = (zero-ablated - spliced) / (zero-ablated - clean)"}
  for name, texts in sets.items():
    losses = smollm2_splice.splice_losses(model, list(texts), layer, reconstructions, max_length, batch_size)
    for run_row, seed_index in zip(losses["runs"], seed_indices):
      run_row["seed_index"] = int(seed_index)
    spliced = [row["ce_spliced"] for row in losses["runs"]]
    recovered = [row["ce_loss_recovered"] if row["ce_loss_recovered"] is not None else float("nan")
                 for row in losses["runs"]]
    losses["over_seeds"] = {"ce_spliced": text_claims.interval(spliced),
                            "ce_loss_recovered": text_claims.interval(recovered)}
    out["sets"][name] = losses
  return out


def _ci(cell: Mapping[str, Any]) -> str:
  return text_claims.interval_text(cell, ".3f")


def markdown(payload: Mapping[str, Any] | None) -> list[str]:
  """report.md's "Splicing cost (CE loss recovered)" section."""
  title = "## Splicing cost: cross-entropy loss recovered"
  if payload is None:
    return [title, "", "Not run (`splice` is not in `config.stages`).", ""]
  lines = [title, "",
           f"At `{payload['layer']}` the SAE's reconstruction replaces the activation at every real token "
           "(spliced), against the clean model and the layer zero-ablated; "
           f"{payload['definition']}. Mean over SAE seeds with its 95% t interval; metrics/splice.json.", "",
           "| texts | predicted tokens | CE clean | CE zero-ablated | CE spliced | loss recovered | per seed |",
           "|---|---|---|---|---|---|---|"]
  for name, losses in payload["sets"].items():
    per_seed = ", ".join("n/a" if r["ce_loss_recovered"] is None else f"{r['ce_loss_recovered']:.3f}"
                         for r in losses["runs"])
    lines.append(f"| {SET_TITLES.get(name, name)} ({losses['num_texts']}) | {losses['num_predicted_tokens']} | "
                 f"{losses['ce_clean']:.3f} | {losses['ce_zero_ablated']:.3f} | "
                 f"{_ci(losses['over_seeds']['ce_spliced'])} | {_ci(losses['over_seeds']['ce_loss_recovered'])} | "
                 f"{per_seed} |")
  return lines + [""]
