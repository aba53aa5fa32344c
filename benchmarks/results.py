"""What a benchmark main measured, as rows the suite can collect: `--json_out=FILE` of every benchmark.

A row is one piece of work timed two ways: mpcodec's figure, the peer's figure (another way of doing the
same work: the PyTorch tool a researcher would otherwise run, or a plain loop) and their ratio
(mpcodec / peer, higher is better for mpcodec), each with its unit; a peer that was not run gives no
figure and says why in `note`. The machine (CPU model, cores, device kind, load) and the versions are
recorded beside the rows, since these ratios differ between CPU kinds.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
from typing import Any

from absl import flags

from mpcodec.core.errors import ConfigError

_JSON_OUT = flags.DEFINE_string("json_out", "", "Also write the benchmark's rows (figures and ratios) to "
                                "this JSON file, as read by benchmarks.suite.")

PACKAGES = ("jax", "jaxlib", "flax", "numpy", "torch", "sentence-transformers")


@dataclasses.dataclass
class Row:
  """One timed comparison; `ratio` = mpcodec / peer (None when the peer was not run)."""

  benchmark: str
  work: str
  unit: str
  mpcodec: float
  peer_name: str
  peer: float | None = None
  cpu_seconds: dict[str, float] | None = None   # process CPU seconds of each side, where measured
  note: str = ""

  @property
  def ratio(self) -> float | None:
    return None if self.peer in (None, 0) else self.mpcodec / self.peer

  def as_dict(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "ratio": self.ratio}


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo, else the platform's processor string)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown"


def versions() -> dict[str, str | None]:
  """Installed versions of the packages that set the figures (None: not installed); nothing is imported."""
  found = {}
  for name in PACKAGES:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      found[name] = None
  return found


def machine(with_devices: bool = True) -> dict[str, Any]:
  """CPU model, cores, load average and (when `with_devices`, which starts JAX) the device kind."""
  info = {"cpu_model": cpu_model(), "cores": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}
  if with_devices:
    import jax  # pylint: disable=g-import-not-at-top
    info.update(platform=jax.default_backend(), device_kind=jax.devices()[0].device_kind,
                device_count=jax.device_count())
  return info


def write(rows: list[Row], **extra: Any) -> None:
  """Writes `rows` (with the machine and versions) to --json_out, when it was given."""
  if not _JSON_OUT.value:
    return
  record = {"machine": machine(), "versions": versions(), "rows": [row.as_dict() for row in rows], **extra}
  directory = os.path.dirname(os.path.abspath(_JSON_OUT.value))
  os.makedirs(directory, exist_ok=True)
  temporary = _JSON_OUT.value + ".tmp"
  with open(temporary, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1, allow_nan=False)
  os.replace(temporary, _JSON_OUT.value)


def peer_not_run(asked: bool, package: str = "torch") -> str:
  """Why a peer has no figure: its package is missing (`asked`), or its flag turned it off."""
  return f"skipped: {package} is not installed" if asked else "not run: --torch_baseline=false"


def torch_available() -> bool:
  """Whether PyTorch can be found (without importing it)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  return importlib.util.find_spec("torch") is not None


def torch_peer(flag: flags.FlagHolder) -> bool:
  """Whether a benchmark's PyTorch peer runs: its --torch_baseline `flag` is on and torch is installed.
  Left at its default, the peer is skipped without torch; asked for on the command line, a missing torch
  is an error naming the extra."""
  if not flag.value or torch_available():
    return bool(flag.value)
  if flags.FLAGS[flag.name].present:
    raise ConfigError(f"--{flag.name} needs PyTorch, which is not installed: pip install -e '.[bench]', "
                      f"or pass --{flag.name}=false")
  return False
