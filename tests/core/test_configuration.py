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
