"""Tests of mpcodec.core.configuration: typed parsing, nested defaults, errors that name the key."""

import dataclasses
from typing import Literal

import ml_collections
import pytest

from mpcodec.core import configuration
from mpcodec.core.configuration import ConfigError


@dataclasses.dataclass(frozen=True)
class Inner:
  width: int = 3
  kind: Literal["a", "b"] = "a"

  def checks(self):
    yield "width", self.width > 0, f"must be > 0, got {self.width}"


@dataclasses.dataclass(frozen=True)
class Outer:
  rate: float = 0.1
  sizes: tuple[int, ...] = (1, 2)
  inner: Inner = Inner()
  special: Inner = Inner(width=7, kind="b")
  name: str | None = None


def test_parse_fills_defaults_and_coerces():
  cfg = configuration.parse(Outer, ml_collections.ConfigDict({"rate": 1, "sizes": [4, 5]}))
  assert cfg == Outer(rate=1.0, sizes=(4, 5))
  assert isinstance(cfg.rate, float)
  hash(cfg)  # frozen and hashable: usable as static data under jit


def test_an_empty_command_line_value_is_the_empty_sequence():
  # `--config.sizes=` reaches the parser as ("",); "()" as ().
  assert configuration.parse(Outer, {"sizes": ("",)}).sizes == ()
  assert configuration.parse(Outer, {"sizes": ()}).sizes == ()
  with pytest.raises(ConfigError, match=r"config\.sizes\[1\]: expected int, got str ''"):
    configuration.parse(Outer, {"sizes": (1, "")})


def test_partly_given_section_keeps_the_parents_defaults():
  cfg = configuration.parse(Outer, {"special": {"width": 9}})
  assert cfg.special == Inner(width=9, kind="b")
  assert configuration.parse(Outer, {"inner": {"kind": "b"}}).inner == Inner(width=3, kind="b")


@pytest.mark.parametrize("raw,message", [
    ({"rte": 0.1}, r"config\.rte: unknown key; valid keys here are \['inner', 'name', 'rate', 'sizes', 'special'\]"),
    ({"rate": "fast"}, r"config\.rate: expected float, got str"),
    ({"rate": True}, r"config\.rate: expected float, got bool"),
    ({"sizes": [1, "2"]}, r"config\.sizes\[1\]: expected int"),
    ({"inner": {"width": 0}}, r"config\.inner\.width: must be > 0, got 0"),
    ({"inner": {"kind": "c"}}, r"config\.inner\.kind: 'c' is not one of \['a', 'b'\]"),
    ({"inner": 5}, r"config\.inner: expected a section"),
    ({"name": 3}, r"config\.name: 3 matches none of"),
])
def test_errors_name_the_key(raw, message):
  with pytest.raises(ConfigError, match=message):
    configuration.parse(Outer, raw)


def test_json_round_trip():
  cfg = configuration.parse(Outer, {"sizes": (3,), "name": "x"})
  assert configuration.parse(Outer, configuration.to_dict(cfg)) == cfg
  assert configuration.to_dict(cfg)["sizes"] == [3]


# ----------------------------------------------------------------------------------------------------
# Which knobs define a run: training_fingerprint from field metadata.


@dataclasses.dataclass(frozen=True)
class Loop:
  steps: int = 10
  chunk_steps: int = configuration.execution_only(5)


@dataclasses.dataclass(frozen=True)
class Run:
  RENAMED = {"log_every": "chunk_steps"}   # a ClassVar: no annotation, so not a field

  rate: float = 0.1
  chunk_steps: int = dataclasses.field(default=50, metadata={"run": False})
  loops: tuple[int, ...] = (1,)
  loop: Loop = Loop()


def test_an_execution_only_knob_leaves_the_fingerprint_unchanged():
  base = configuration.training_fingerprint(Run())
  assert base == {"rate": 0.1, "loops": [1], "loop": {"steps": 10}}
  assert configuration.training_fingerprint(Run(chunk_steps=7)) == base
  assert configuration.training_fingerprint(Run(loop=Loop(chunk_steps=1))) == base


def test_a_run_knob_changes_the_fingerprint():
  base = configuration.training_fingerprint(Run())
  for changed in (Run(rate=0.2), Run(loops=(1, 2)), Run(loop=Loop(steps=11))):
    assert configuration.training_fingerprint(changed) != base


def test_a_new_field_is_part_of_the_run_by_default():
  extended = dataclasses.make_dataclass("Extended", [("width", int, 3)], bases=(Run,), frozen=True)
  fingerprint = configuration.training_fingerprint(extended())
  assert fingerprint["width"] == 3 and "chunk_steps" not in fingerprint
  assert configuration.training_fingerprint(extended(width=4)) != fingerprint
  with pytest.raises(TypeError, match="config dataclass instance"):
    configuration.training_fingerprint(Run)


def test_a_renamed_key_is_accepted_with_a_warning(caplog):
  with caplog.at_level("WARNING"):
    cfg = configuration.parse(Run, {"log_every": 9})
  assert cfg.chunk_steps == 9
  assert "config.log_every is deprecated: it is now config.chunk_steps" in caplog.text
  with pytest.raises(ConfigError, match=r"config\.log_evry: unknown key"):
    configuration.parse(Run, {"log_evry": 9})


# ----------------------------------------------------------------------------------------------------
# config_file: a config file's get_config in one call.


def _select(cfg, text):
  cfg.loops = tuple(int(v) for v in text.split("+"))


GET_CONFIG = configuration.config_file(
    Run, {"rate": 0.5}, {"smoke": {"loop.steps": 2}, "fast": lambda cfg: setattr(cfg, "rate", 9.0),
                         "loops=": _select})


def test_config_file_applies_overrides_presets_pairs_and_valued_presets_in_order():
  assert GET_CONFIG().to_dict() == {"rate": 0.5, "chunk_steps": 50, "loops": (1,), "log_every": None,
                                    "loop": {"steps": 10, "chunk_steps": 5}}
  assert GET_CONFIG("") == GET_CONFIG(None) == GET_CONFIG()
  cfg = GET_CONFIG("loops=3+4,loop.steps=7,smoke")
  assert (cfg.loop.steps, cfg.loops) == (7, (3, 4))        # pairs after presets, valued presets last
  assert GET_CONFIG("fast,rate=1.5").rate == 1.5
  assert configuration.parse(Run, GET_CONFIG("smoke")) == Run(rate=0.5, loop=Loop(steps=2))


def test_config_file_errors_name_the_part():
  with pytest.raises(ConfigError, match=r"'bogus': unknown preset; expected 'smoke' or 'fast'"):
    GET_CONFIG("bogus")
  with pytest.raises(ConfigError, match=r"'loop.width=3': .*unknown key 'width'"):
    GET_CONFIG("loop.width=3")
  with pytest.raises(ConfigError, match=r"ratee: unknown key"):
    configuration.config_file(Run, {"ratee": 1.0})      # a misspelt override fails when the file loads


def test_a_config_file_keeps_the_old_name_settable(caplog):
  assert GET_CONFIG().log_every is None
  assert configuration.parse(Run, GET_CONFIG()) == Run(rate=0.5)     # unset: no warning, no change
  assert not caplog.text
  raw = GET_CONFIG()
  raw.log_every = 3                                                   # what --config.log_every=3 does
  with caplog.at_level("WARNING"):
    assert configuration.parse(Run, raw).chunk_steps == 3
  assert "deprecated" in caplog.text
