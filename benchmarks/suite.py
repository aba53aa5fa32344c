"""Every benchmark at one named size, in one JSON file and one markdown table.

  python -m benchmarks.suite --size=cpu-small --out=runs/bench_small --data_dir=../shared/data
  python -m benchmarks.suite --size=cpu --out=runs/bench_cpu --data_dir=../shared/data
  python -m benchmarks.suite --size=gpu --out=runs/bench_gpu --data_dir=../shared/data --dry_run

Each benchmark main (mono_poly, codec, dynamics, minilm) runs in its own process with the size's flags
and `--json_out`; the suite collects their rows into `<out>/suite.json` and `<out>/suite.md`: the
machine (CPU model, cores, device kind, load before and after), the versions (jax, jaxlib, torch and
sentence-transformers where installed) and every ratio, each row with the process CPU seconds of both
sides where the benchmark measures them (on a shared machine wall time is distorted; CPU time much
less). The PyTorch peers run where torch is importable (the `bench` extra) and are reported as skipped,
in the table, where it is not; `--peers=off` leaves them out anyway. Sizes: `cpu-small` (seconds per
benchmark, run in CI), `cpu` (the issue's targets on a 2-core machine), `gpu` (one accelerator; mono->poly
with 1,024 seeds). `--dry_run` lists the commands of a size and runs none. A benchmark that fails is
marked failed in the table and the suite exits with status 1 after the others have run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import flags

from benchmarks import results, table
from launch import common
from mpcodec.core.errors import ConfigError

# The flags of each benchmark main at each size (data-reading ones also get --data_dir).
SIZES: dict[str, dict[str, list[str]]] = {
    "cpu-small": {
        "mono_poly": ["--seeds=1,4", "--steps=20", "--repeats=1", "--run_loop=false"],
        "codec": ["--dim=64", "--latents=256", "--k=8", "--batch=64", "--steps=3", "--repeats=1", "--seeds=2"],
        "dynamics": ["--archs=mlp_128_64@mnist", "--config_arg=smoke", "--steps=10", "--repeats=1"],
        "minilm": ["--texts=8", "--batch_size=4", "--repeats=1", "--skip_cache"],
    },
    "cpu": {
        "mono_poly": ["--seeds=1,8,64", "--steps=300", "--repeats=3", "--run_loop=false"],
        "codec": ["--steps=10", "--repeats=3"],
        "dynamics": ["--steps=50", "--repeats=2"],
        "minilm": ["--texts=512", "--batch_size=32", "--repeats=3", "--skip_cache"],
    },
    "gpu": {
        "mono_poly": ["--seeds=1,64,1024", "--steps=300", "--repeats=3", "--run_loop=false"],
        "codec": ["--steps=50", "--repeats=3", "--seeds=8"],
        "dynamics": ["--repeats=3"],
        "minilm": ["--texts=2048", "--batch_size=128", "--repeats=3", "--skip_cache"],
    },
}
READS_DATA = ("dynamics", "minilm")
PEER_FLAG = "--torch_baseline=false"

_SIZE = flags.DEFINE_enum("size", "cpu-small", list(SIZES), "Named size of every benchmark.")
_OUT = flags.DEFINE_string("out", None, "Folder of suite.json and suite.md (created).")
_DATA_DIR = common.define_data_dir("Real-data folder (MNIST, AG News, the MiniLM model)")
_ONLY = flags.DEFINE_list("benchmarks", [], "Run only these benchmarks (default: all of the size).")
_PEERS = flags.DEFINE_enum("peers", "auto", ["auto", "off"], "auto: the PyTorch peers run where torch is "
                           "importable; off: never.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "List the size's commands and run none.")
_TIMEOUT = flags.DEFINE_integer("timeout_s", 3600, "Seconds each benchmark may run.")


def commands(size: str, data_dir: str | None, only=(), peers: str = "auto") -> dict[str, list[str]]:
  """{benchmark: argv} of a size (the --json_out flag is added at run time)."""
  chosen = {name: argv for name, argv in SIZES[size].items() if not only or name in only}
  out = {}
  for name, argv in chosen.items():
    argv = [sys.executable, "-m", f"benchmarks.{name}", *argv]
    if name in READS_DATA and data_dir:
      argv.append(f"--data_dir={data_dir}")
    if peers == "off":
      argv.append(PEER_FLAG)
    out[name] = argv
  return out


def _selection() -> list[str]:
  unknown = sorted(set(_ONLY.value) - set(SIZES[_SIZE.value]))
  if unknown:
    raise ConfigError(f"--benchmarks: unknown {unknown}; choose from {sorted(SIZES[_SIZE.value])}")
  return _ONLY.value


def _data_dir(names) -> str | None:
  """The checked data folder when a chosen benchmark reads data; a dry run lists the value unchecked."""
  if not any(name in READS_DATA for name in (names or SIZES[_SIZE.value])):
    return None
  if _DRY_RUN.value:
    return _DATA_DIR.value or os.environ.get(common.DATA_DIR_ENV) or "(from $MPCODEC_DATA_DIR)"
  return common.data_dir(_DATA_DIR.value)


def _peers_line() -> str:
  if _PEERS.value == "off":
    return "off (--peers=off)"
  return "on" if results.torch_available() else "skipped: torch is not importable (pip install -e '.[bench]')"


def check():
  names = _selection()
  out = common.check_workdir(_OUT.value, "--out") if _OUT.value else None
  if out is None and not _DRY_RUN.value:
    raise ConfigError("--out is required (a folder for suite.json and suite.md)")
  data_dir = _data_dir(names)
  planned = commands(_SIZE.value, data_dir, names, _PEERS.value)
  return {"size": _SIZE.value, "benchmarks": ", ".join(planned), "peers": _peers_line(),
          "out": out or "none (dry run)", "data": data_dir or "none read"}


def main(argv):
  del argv
  names = _selection()
  planned = commands(_SIZE.value, _data_dir(names), names, _PEERS.value)
  if _DRY_RUN.value:
    print(f"size {_SIZE.value}: {len(planned)} benchmarks (PyTorch peers: {_peers_line()})")
    for name, argv in planned.items():
      print(f"  {name}: python -m {' '.join(argv[2:])}")
    return
  if not _OUT.value:
    raise ConfigError("--out is required (a folder for suite.json and suite.md)")
  os.makedirs(_OUT.value, exist_ok=True)
  record = {"size": _SIZE.value, "peers": _peers_line(), "machine": results.machine(),
            "versions": results.versions(), "benchmarks": {}, "rows": []}
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
  failed = False
  with tempfile.TemporaryDirectory() as scratch:
    for name, argv in planned.items():
      json_out = os.path.join(scratch, f"{name}.json")
      print(f"[{name}] python -m {' '.join(argv[2:])}", flush=True)
      started = time.perf_counter()
      try:
        done = subprocess.run(argv + [f"--json_out={json_out}"], env=env, capture_output=True, text=True,
                              timeout=_TIMEOUT.value, check=False)
        returncode, output = done.returncode, done.stdout + done.stderr
      except subprocess.TimeoutExpired as e:
        returncode, output = -1, f"timed out after {_TIMEOUT.value} s {e.stdout or ''}"
      seconds = time.perf_counter() - started
      print(output if returncode else (done.stdout), flush=True)
      run = {"command": "python -m " + " ".join(argv[2:]), "seconds": round(seconds, 1),
             "returncode": returncode, "error": ""}
      if returncode == 0 and os.path.exists(json_out):
        with open(json_out, encoding="utf-8") as f:
          record["rows"] += json.load(f)["rows"]
      else:
        failed = True
        run["error"] = (output.strip().splitlines() or ["no output"])[-1][:300].replace("|", "/")
      record["benchmarks"][name] = run
  record["load_average_after"] = round(os.getloadavg()[0], 2)
  json_path, md_path = os.path.join(_OUT.value, "suite.json"), os.path.join(_OUT.value, "suite.md")
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1, allow_nan=False)
  with open(md_path, "w", encoding="utf-8") as f:
    f.write(table.markdown(record))
  print(table.markdown(record))
  print(f"wrote {json_path} and {md_path}")
  if failed:
    raise SystemExit(1)


if __name__ == "__main__":
  common.run(main, check)
