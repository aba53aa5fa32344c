"""Every default is written once: configs/*.py start from the dataclass defaults and change only what
their OVERRIDES list (each a real change); and the one shared parser of the config-file argument."""

import dataclasses
from typing import Literal

import ml_collections
import pytest

from configs import codec as codec_config
from configs import codec_minilm as codec_minilm_config
from configs import codec_smollm2 as codec_smollm2_config
from configs import dynamics_analysis as dynamics_analysis_config
from configs import dynamics as dynamics_config
from configs import mono_poly as mono_poly_config
from configs import toy_superposition as toy_config
from mpcodec.core import configuration
from mpcodec.core.configuration import ConfigError
from mpcodec.studies.codec.config import CodecConfig
from mpcodec.studies.dynamics.analysis import AnalysisConfig
from mpcodec.studies.dynamics.config import SweepConfig
from mpcodec.studies.mono_poly.config import MonoPolyConfig
from mpcodec.studies.toy_superposition.config import ToySuperpositionConfig

STUDIES = {
    "mono_poly": (mono_poly_config, MonoPolyConfig),
    "dynamics": (dynamics_config, SweepConfig),
    "codec": (codec_config, CodecConfig),
    "codec_minilm": (codec_minilm_config, CodecConfig),
    "codec_smollm2": (codec_smollm2_config, CodecConfig),
    "dynamics_analysis": (dynamics_analysis_config, AnalysisConfig),
    "toy_superposition": (toy_config, ToySuperpositionConfig),
}


def _leaves(tree, prefix=""):
  """{dotted key: value} of a nested dict; lists and tuples become lists (as in configuration.to_dict)."""
  if isinstance(tree, ml_collections.ConfigDict):
    tree = tree.to_dict()
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_leaves(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: list(tree) if isinstance(tree, (list, tuple)) else tree}


def _perturbed(value):
  """A value of the same kind that no config file could have written by chance."""
  if isinstance(value, ml_collections.ConfigDict):
    return ml_collections.ConfigDict({k: _perturbed(v) for k, v in value.items()})
  if isinstance(value, bool):
    return not value
  if isinstance(value, int):
    return value + 7919
  if isinstance(value, float):
    return value * 3.0 + 0.125
  if isinstance(value, str):
    return value + "~perturbed"
  if isinstance(value, (tuple, list)):
    return tuple(value) + ("~perturbed",)
  return "~perturbed"


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_defaults_mirror_the_dataclass(study):
  _, cls = STUDIES[study]
  assert _leaves(configuration.defaults(cls)) == _leaves(configuration.to_dict(cls()))
  assert configuration.parse(cls, configuration.defaults(cls)) == cls()


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_every_override_changes_a_default(study):
  """An override equal to the dataclass default is a duplicate (the drift this test guards against)."""
  module, cls = STUDIES[study]
  defaults = _leaves(configuration.to_dict(cls()))
  for key, value in getattr(module, "OVERRIDES", {}).items():
    assert key in defaults, f"configs/{study}.py: OVERRIDES[{key!r}] is no leaf of {cls.__name__}"
    normalized = list(value) if isinstance(value, (list, tuple)) else value
    assert normalized != defaults[key], (
        f"configs/{study}.py: OVERRIDES[{key!r}] = {value!r} repeats {cls.__name__}'s default; drop it")


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_default_config_is_the_dataclass_default_but_the_overrides(study):
  module, cls = STUDIES[study]
  defaults = _leaves(configuration.to_dict(cls()))
  got = _leaves(configuration.to_dict(configuration.parse(cls, module.get_config())))
  overrides = _leaves({})
  for key, value in getattr(module, "OVERRIDES", {}).items():
    overrides[key] = list(value) if isinstance(value, (list, tuple)) else value
  assert {k for k in defaults if got[k] != defaults[k]} == set(overrides)
  assert {k: got[k] for k in overrides} == overrides
  assert module.get_config("") == module.get_config(None) == module.get_config()


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_config_file_writes_no_default_of_its_own(study, monkeypatch):
  """With every default perturbed, get_config() follows each one but the keys its OVERRIDES name: the
  file takes its values from the dataclass, not from literals that repeat it."""
  module, cls = STUDIES[study]
  real_defaults = configuration.defaults
  perturbed = _perturbed(real_defaults(cls))
  monkeypatch.setattr(configuration, "defaults",
                      lambda c: _perturbed(real_defaults(c)) if c is cls else real_defaults(c))
  got = _leaves(module.get_config())
  for key, value in _leaves(perturbed).items():
    if key not in getattr(module, "OVERRIDES", {}):
      assert got[key] == value, f"configs/{study}.py sets {key} = {got[key]!r} outside OVERRIDES"


def test_values_that_used_to_drift_are_pinned():
  sweep = configuration.parse(SweepConfig, dynamics_config.get_config())
  assert (sweep.base.max_length, sweep.base.max_matrix_rows) == (48, 4096)
  assert (SweepConfig().base.max_length, SweepConfig().base.max_matrix_rows) == (48, 4096)
  assert {sweep.mlp.final_eval_size, sweep.cnn.final_eval_size, sweep.transformer.final_eval_size} == {2000}
  assert [(f.batch_size, f.probe_size, f.train_probe_size) for f in (sweep.mlp, sweep.cnn, sweep.transformer)
          ] == [(64, 512, 256), (16, 64, 64), (16, 64, 64)]
  assert len(sweep.runs) == 55
  smoke = configuration.parse(SweepConfig, dynamics_config.get_config("smoke"))
  assert (smoke.base.max_length, smoke.base.num_steps, smoke.runs) == (
      32, 20, ("mlp_128_64@mnist", "mlp_128_64@ag_news"))

  mono = configuration.parse(MonoPolyConfig, mono_poly_config.get_config())
  assert (mono.phase1.steps, mono.phase1.checkpoint_every) == (1500, 100)
  assert (mono.phase2.task, mono.phase2.steps, mono.phase2.checkpoint_every) == ("xor", 4000, 200)
  assert (mono.data_per_seed, mono.shared_data_order, mono.control_arm, mono.smoke) == (True, False, True, False)
  mono_smoke = configuration.parse(MonoPolyConfig, mono_poly_config.get_config("smoke"))
  assert mono_smoke.smoke and (mono_smoke.data_per_seed, mono_smoke.control_arm) == (True, True)

  codec = configuration.parse(CodecConfig, codec_config.get_config())
  assert (codec.sae_loop.steps, codec.squeezer_loop.steps, codec.squeezer.k, codec.sae.aux_k) == (
      2000, 2000, 128, 32)
  # 5 seeds (the statistics layer's minimum), the shuffled-latent and untrained Squeezer nulls on.
  assert (codec.num_seeds, codec.dead_latents.num_seeds, codec.smoke) == (5, 5, False)
  assert (codec.shuffled_latent_squeezer, codec.analysis.untrained_squeezers) == (True, 3)
  codec_smoke = configuration.parse(CodecConfig, codec_config.get_config("smoke"))
  assert (codec_smoke.smoke, codec_smoke.num_seeds, codec_smoke.analysis.untrained_squeezers) == (True, 2, 1)

  toy = configuration.parse(ToySuperpositionConfig, toy_config.get_config())
  assert [(t.num_steps, t.batch_size, t.history_every, t.optim.learning_rate, t.optim.schedule)
          for t in (toy.train, toy.phase_diagram.train, toy.privileged_basis.train)] == [
              (5000, 1024, 500, 1e-2, "cosine"), (3000, 512, 300, 1e-2, "cosine"),
              (10_000, 512, 1000, 1e-2, "cosine")]


def test_config_file_arguments_keep_their_meaning():
  """The forms the config files accepted before the shared parser, with the same effect."""
  cfg = dynamics_config.get_config("smoke,arch=mlp_128_64")
  assert list(cfg.runs) == ["mlp_128_64@mnist", "mlp_128_64@ag_news"] and cfg.base.num_seeds == 2
  assert dynamics_config.get_config("arch=mlp_128_64,smoke").to_dict() == cfg.to_dict()
  assert dynamics_config.get_config("arch=mlp_128_64,dataset=mnist").runs == ["mlp_128_64@mnist"]
  assert len(dynamics_config.get_config("arch=cnn_32_64+cnn_32_64_128").runs) == 6
  cfg = dynamics_config.get_config("smoke,seeds=3,steps=40")
  assert (cfg.base.num_seeds, cfg.base.num_steps) == (3, 40)
  assert dynamics_config.get_config("base.num_seeds=3").base.num_seeds == 3
  with pytest.raises(ConfigError, match="selects no run.*valid arch names"):
    dynamics_config.get_config("arch=mlp_nope")

  mono = codec_config.get_config("source=mono_poly")
  assert (mono.source.kind, mono.sae.num_latents, mono.sae_loop.batch_size) == ("checkpoint", 64, 256)
  both = codec_config.get_config("smoke,source=mono_poly")
  assert both.to_dict() == codec_config.get_config("source=mono_poly,smoke").to_dict()
  # The smoke run shrinks the loops of any source, and the model and source only for the ground truth.
  assert (both.sae_loop.steps, both.sae.num_latents, both.source.ground_truth.dim) == (40, 64, 128)
  smoke = codec_config.get_config("smoke")
  assert (smoke.sae_loop.steps, smoke.sae.k, smoke.source.ground_truth.dim) == (40, 3, 16)
  assert codec_config.get_config("source=ground_truth").to_dict() == codec_config.get_config().to_dict()
  with pytest.raises(ConfigError, match=r"unknown value for 'source'.*source=mono_poly"):
    codec_config.get_config("source=foo")
  for module in (mono_poly_config, toy_config):
    assert module.get_config("smoke").num_seeds < module.get_config().num_seeds
    with pytest.raises(ConfigError, match="'bogus': unknown preset; expected 'smoke'"):
      module.get_config("bogus")


# ----------------------------------------------------------------------------------------------------
# The shared parser, on a small config of its own.


@dataclasses.dataclass(frozen=True)
class _Inner:
  rate: float = 0.5
  sizes: tuple[int, ...] = (1, 2)


@dataclasses.dataclass(frozen=True)
class _Outer:
  name: str = "a"
  steps: int = 10
  flag: bool = False
  kind: Literal["x", "y"] = "x"
  inner: _Inner = _Inner(rate=0.25)
  whole: float = 1   # an int default of a float field


SMALL = {"smoke": {"steps": 2, "inner.sizes": (3,)}, "fast": lambda cfg: setattr(cfg, "name", "fast")}


def _parse(arg, valued=None):
  """`valued`: presets that take a value ("pick=")."""
  return configuration.parse_arg(arg, {**SMALL, **(valued or {})}, config=configuration.defaults(_Outer))


def test_defaults_of_a_small_dataclass():
  cfg = configuration.defaults(_Outer)
  assert isinstance(cfg.inner, ml_collections.ConfigDict) and cfg.inner.rate == 0.25
  assert cfg.inner.sizes == (1, 2) and isinstance(cfg.inner.sizes, tuple)
  assert isinstance(cfg.whole, float)
  cfg.whole = 2.5   # a float override of an int-written float default is accepted
  with pytest.raises(TypeError, match="has no default"):
    configuration.defaults(dataclasses.make_dataclass("Required", [("x", int)]))


def test_no_argument_changes_nothing():
  for arg in (None, "", " , "):
    assert _parse(arg).to_dict() == configuration.defaults(_Outer).to_dict()


def test_presets_mappings_and_callables():
  cfg = _parse("smoke")
  assert (cfg.steps, cfg.inner.sizes, cfg.name) == (2, (3,), "a")
  assert _parse("fast").name == "fast"
  assert _parse("fast,smoke").to_dict() == _parse("smoke,fast").to_dict()


def test_pairs_are_python_literals_with_dotted_keys():
  cfg = _parse("steps=7,flag=True,inner.rate=1e-3,inner.sizes=(4, 8),name=mnist,kind='y',whole=3")
  assert (cfg.steps, cfg.flag, cfg.inner.rate, cfg.inner.sizes, cfg.name, cfg.kind) == (
      7, True, 1e-3, (4, 8), "mnist", "y")
  assert cfg.whole == 3.0 and isinstance(cfg.whole, float)
  assert _parse("name=a+b").name == "a+b" and _parse("name=x=y").name == "x=y"
  parsed = configuration.parse(_Outer, cfg)
  assert parsed.inner == _Inner(rate=1e-3, sizes=(4, 8))


def test_pairs_override_presets_whatever_the_order():
  assert _parse("steps=5,smoke").steps == 5 and _parse("smoke,steps=5").steps == 5
  cfg = _parse(" smoke , inner.sizes=[9] ")
  assert cfg.inner.sizes == [9] and configuration.parse(_Outer, cfg).inner.sizes == (9,)


def test_valued_presets_take_the_text_after_presets_and_pairs():
  seen = []
  _parse("pick=a+b,smoke", valued={"pick=": lambda cfg, text: seen.append((text, cfg.steps))})
  assert seen == [("a+b", 2)]


def test_unknown_preset_or_key_names_it_and_the_valid_ones():
  with pytest.raises(ConfigError, match=r"'smok': unknown preset; expected 'smoke' or 'fast' or key=value"):
    _parse("smok")
  with pytest.raises(ConfigError, match=r"'stepz=3'.*unknown key 'stepz'; valid keys are \[.*'steps'"):
    _parse("stepz=3")
  with pytest.raises(ConfigError, match=r"unknown key 'rat'; valid keys in inner are \['rate', 'sizes'\]"):
    _parse("inner.rat=1.0")
  with pytest.raises(ConfigError, match=r"with key in \['pick'\] or a config key"):
    _parse("nope=1", valued={"pick=": lambda cfg, text: None})
  with pytest.raises(ConfigError, match="inner: is a section"):
    _parse("inner=3")
  with pytest.raises(ConfigError, match=r"steps\.x: steps is a value, not a section"):
    _parse("steps.x=3")
  with pytest.raises(ConfigError, match=r"config\.steps: expected int"):
    configuration.parse(_Outer, _parse("steps=2.5"))


def test_split_and_literal():
  assert configuration.split_arg("a=(1, 2),b=[3,4],c='x,y', d") == ["a=(1, 2)", "b=[3,4]", "c='x,y'", "d"]
  assert configuration.split_arg(None) == [] and configuration.split_arg("") == []
  assert [configuration.literal(t) for t in ("3", "1e-2", "None", "(1,)", "mnist", "a+b", "'s'")] == [
      3, 1e-2, None, (1,), "mnist", "a+b", "s"]


def test_override_keeps_the_given_sequence_and_copies_it():
  runs = ["a", "b"]
  cfg = configuration.override(ml_collections.ConfigDict({"runs": ("x",)}), {"runs": runs})
  assert cfg.runs == ["a", "b"] and isinstance(cfg.runs, list)
  runs.append("c")
  assert cfg.runs == ["a", "b"]
  assert configuration.lookup(configuration.defaults(_Outer), "inner.rate") == 0.25
