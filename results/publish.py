"""Copies a finished run's report, report.json, key plots and small metric files into results/<study>/, and
writes results/<study>/run.json (the command, the config it resolved to, the git commit, the machine and the
wall time).

Run from the repository root whose code produced the run (its commit is recorded and its configs resolve
the command's --config):

  /usr/bin/time -v -o runs/mono_poly.time python -m launch.mono_poly --config=configs/mono_poly.py \
      --workdir=runs/mono_poly
  python -m results.publish --study=mono_poly --workdir=runs/mono_poly --time_log=runs/mono_poly.time -- \
      python -m launch.mono_poly --config=configs/mono_poly.py --workdir=runs/mono_poly

`--wall_time_s=SECONDS` stands in for `--time_log` where the run was timed otherwise. Then
`python -m results.findings` rewrites results/README.md from the published JSON.

`--cost_only` records what a part of a study not yet run whole costs (e.g. one configuration of the
dynamics grid): it writes results/<study>/cost.json (command, commit, machine, wall time, resolved config)
and copies nothing else, so the study stays "not yet run" on the findings page, with that cost beside it.
For the dynamics grid trained in shards, `--cost_only --workdir=runs/dynamics` after each shard also adds the
series of every finished run to results/dynamics/dynamics/ (float16 where that keeps every value within
1e-3 relative). A later shard, on another machine or in another session, continues from them: copy
results/dynamics/dynamics/ into runs/dynamics/dynamics/ (the grid's config and shard plan come with it) and
launch.dynamics counts those runs as finished. Once every run is there, `python -m launch.dynamics_analysis --workdir=results/dynamics`
reproduces the analysis from the committed series alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fnmatch
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np

RESULTS_DIR = os.path.dirname(os.path.abspath(__file__))
MAX_FILE_BYTES = 1_500_000   # nothing bulky: a published file above this is refused (checkpoints, caches)


@dataclasses.dataclass(frozen=True)
class Study:
  """What a study's workdir contributes to results/<study>/: `report_json` is copied as report.json."""
  launch: str                      # the launch module whose command produced the run
  report_json: str                 # path inside the workdir of the JSON the findings page reads
  files: tuple[str, ...]           # globs inside the workdir, copied keeping their relative paths


STUDIES = {
    "mono_poly": Study(
        "launch.mono_poly", "report.json",
        ("report.md", "metrics/crs_*.csv", "metrics/training_history.csv", "plots/metrics_test_accuracy.png",
         "plots/metrics_num_polysemantic.png", "plots/metrics_mean_entropy.png", "plots/metrics_mean_l2.png",
         "plots/metrics_mean_angle.png")),
    "toy_superposition": Study(
        "launch.toy_superposition", "metrics/toy_superposition.json",
        ("report.md", "metrics/phase_diagram.csv", "metrics/privileged_basis.csv", "plots/*.png")),
    "codec_ground_truth": Study(
        "launch.codec", "report.json",
        ("report.md", "metrics/analysis.json", "metrics/sae.json", "metrics/squeezer.json",
         "metrics/analysis_timing.json", "plots/or_prevalence.png", "plots/lift_distributions.png",
         "plots/truth_tables.png", "plots/atoms_by_theme.png", "plots/features_per_neuron.png")),
    # The grid's analysis (launch.dynamics_analysis writes it under analysis/) and, by `publish_series`, every
    # run's series, so that `launch.dynamics_analysis --workdir=results/dynamics` reproduces the analysis.
    # The per-jump and per-series tables (jumps.csv, jump_excess.csv, convergence.csv: megabytes for the whole
    # grid) are left out: the analysis writes them again from the committed series.
    "dynamics": Study(
        "launch.dynamics", "analysis/report.json",
        ("analysis/report.md", "analysis/*.json", "analysis/critical_periods.csv", "analysis/mechanism*.csv",
         "analysis/penalty_curve.csv", "analysis/plots/*.png", "dynamics/accuracy_table.md")),
    "codec_minilm": Study(
        "launch.codec", "report.json", ("report.md", "metrics/*.json", "plots/*.png")),
    "codec_smollm2": Study(
        "launch.codec", "report.json", ("report.md", "metrics/*.json", "plots/*.png")),
}


def fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(1)


def machine() -> dict:
  """The CPU model (from /proc/cpuinfo, else platform), the logical cores, the OS and Python."""
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {"cpu_model": model, "logical_cores": os.cpu_count(), "system": platform.system(),
          "python": platform.python_version()}


def git_commit(repo: str) -> dict:
  """HEAD of `repo` and whether its tracked files differ from it (a dirty tree is recorded, not hidden). The
  published studies' folders (results/<study>/) do not count: what an earlier part wrote there is not code."""
  def git(*args):
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True).stdout.strip()
  try:
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude,glob)results/*/**"))}
  except (OSError, subprocess.CalledProcessError) as e:
    fail(f"--repo {repo}: cannot read its git commit ({e})")


_TIME_FIELDS = {   # /usr/bin/time -v lines -> run.json keys
    "Elapsed (wall clock) time": "wall_time_s", "User time (seconds)": "user_cpu_s",
    "System time (seconds)": "system_cpu_s", "Maximum resident set size (kbytes)": "peak_rss_mb",
    "Percent of CPU this job got": "cpu_percent", "Exit status": "exit_status"}


def parse_time_log(text: str, path: str = "--time_log") -> dict:
  """The wall time, CPU seconds, peak memory and exit status from GNU time's `-v` output."""
  out = {}
  for line in text.splitlines():
    name, _, value = line.strip().rpartition(": ")
    key = _TIME_FIELDS.get(name.split(" (h:mm:ss")[0] if name.startswith("Elapsed") else name)
    if key is None:
      continue
    value = value.strip()
    if key == "wall_time_s":
      seconds = 0.0
      for part in value.split(":"):
        seconds = seconds * 60 + float(part)
      out[key] = round(seconds, 2)
    elif key == "peak_rss_mb":
      out[key] = round(int(value) / 1024, 1)
    elif key == "cpu_percent":
      out[key] = int(value.rstrip("%"))
    elif key == "exit_status":
      out[key] = int(value)
    else:
      out[key] = float(value)
  if "wall_time_s" not in out:
    fail(f"{path}: no 'Elapsed (wall clock) time' line (write it with /usr/bin/time -v -o FILE)")
  if out.get("exit_status", 0) != 0:
    fail(f"{path}: the run exited with status {out['exit_status']}; publish finished runs only")
  return out


def public_command(command: list[str], study: str) -> str:
  """The launch command as run, with its --workdir (a machine path) written as runs/<study>."""
  words = [re.sub(r"^--workdir=.*", f"--workdir=runs/{study}", word) for word in command]
  words = ["python" if re.search(r"python[0-9.]*$", words[0]) else words[0]] + words[1:] if words else words
  return " ".join(shlex.quote(word) for word in words)


def resolve_config(command: list[str], launch: str) -> dict:
  """The config the command's --config and --config.* flags resolve to, as the launch resolves it."""
  if launch not in command:
    fail(f"the command does not run {launch} (got: {' '.join(command)})")
  from absl import flags
  from ml_collections import config_flags
  values = flags.FlagValues()
  argv = ["launch"] + [word for word in command if word.startswith("--config")]
  if len(argv) == 1:
    fail("the command has no --config flag")
  # sys_argv: the --config.* override flags are defined from this list, not from this process' argv.
  config_flags.DEFINE_config_file("config", None, "config file", flag_values=values, lock_config=False,
                                  sys_argv=argv)
  values(argv)
  return json.loads(values.config.to_json_best_effort())


def selected_files(workdir: str, study: Study) -> list[str]:
  """Paths relative to `workdir` matched by the study's globs (sorted, each once)."""
  found = []
  for root, _, names in os.walk(workdir):
    for name in names:
      rel = os.path.relpath(os.path.join(root, name), workdir)
      if any(fnmatch.fnmatch(rel, pattern) for pattern in study.files) and rel not in found:
        found.append(rel)
  return sorted(found)


# Published series (results/dynamics) hold each float array as float16 where that keeps every value within
# this relative error of the run's float32 (zeros exact, NaN/Inf kept), else as written.
COMPACT_RELATIVE_ERROR = 1e-3
_NOT_COMPACTED = ("final_test_accuracy",)   # a few values the record holds exactly anyway


def compact_array(values: np.ndarray, relative_error: float = COMPACT_RELATIVE_ERROR) -> np.ndarray:
  """`values` as float16 if every finite value survives within `relative_error` (relative to itself: zeros
  stay zero, values below float16's normal range fail) and no finite value overflows; else unchanged."""
  if values.dtype not in (np.float32, np.float64):
    return values
  with np.errstate(over="ignore"):   # an overflow is found below and keeps the array as it is
    half = values.astype(np.float16)
  finite = np.isfinite(values)
  if not np.array_equal(np.isfinite(half), finite):
    return values
  if not np.array_equal(values[~finite], half[~finite].astype(values.dtype), equal_nan=True):
    return values
  exact = values[finite].astype(np.float64)
  if np.all(np.abs(half[finite].astype(np.float64) - exact) <= relative_error * np.abs(exact)):
    return half
  return values


def write_compact_series(npz_path: str, out_path: str) -> dict[str, str]:
  """Writes the run's series file `npz_path` to `out_path` with `compact_array` on every float series;
  returns each array's stored dtype. `load_sweep` reads either file alike (measures and losses as float32)."""
  from mpcodec.studies.dynamics import series   # pylint: disable=g-import-not-at-top
  arrays = series.load_series(npz_path)
  stored = {k: (v if k in _NOT_COMPACTED else compact_array(v)) for k, v in arrays.items()}
  with open(out_path, "wb") as f:   # A file object: np.savez would append ".npz" to a path.
    np.savez_compressed(f, **stored)
  return {k: str(v.dtype) for k, v in stored.items()}


SERIES_FOLDER = "dynamics"   # inside a dynamics workdir and inside results/dynamics alike


def publish_series(workdir: str, out_dir: str) -> list[str]:
  """Copies every finished run of the dynamics workdir into out_dir/dynamics/ (added to the runs already
  there): its JSON record as written and its series file with `write_compact_series` (float16 where that
  keeps every value within 1e-3 relative), with the grid's config and shard plans, so that later shards
  and `launch.dynamics_analysis --workdir=<out_dir>` read them as launch.dynamics wrote them. Returns the
  written paths relative to out_dir; refuses (one line) a workdir without a finished run."""
  from mpcodec.studies.dynamics import series   # pylint: disable=g-import-not-at-top
  source = os.path.join(workdir, SERIES_FOLDER)
  finished = []
  for name in sorted(os.listdir(source)) if os.path.isdir(source) else []:
    if name.endswith(".json") and "__" in name:
      record = series.read_record(os.path.join(source, name))
      if record and record.get("status") == "finished" and os.path.isfile(os.path.join(source, record["npz"])):
        finished.append((name, record["npz"]))
  if not finished:
    fail(f"--workdir {workdir}: no finished dynamics run under {SERIES_FOLDER}/ (has a shard finished a run?)")
  target = os.path.join(out_dir, SERIES_FOLDER)
  os.makedirs(os.path.join(target, "shard_plans"), exist_ok=True)
  written = []
  for record_name, npz_name in finished:
    write_compact_series(os.path.join(source, npz_name), os.path.join(target, npz_name))
    shutil.copyfile(os.path.join(source, record_name), os.path.join(target, record_name))
    written += [npz_name, record_name]
  extras = [series.GRID_CONFIG_NAME] + [os.path.join("shard_plans", n) for n in sorted(
      os.listdir(os.path.join(source, "shard_plans")) if os.path.isdir(os.path.join(source, "shard_plans")) else [])]
  for rel in extras:
    if os.path.isfile(os.path.join(source, rel)):
      shutil.copyfile(os.path.join(source, rel), os.path.join(target, rel))
      written.append(rel)
  for rel in written:
    size = os.path.getsize(os.path.join(target, rel))
    if size > MAX_FILE_BYTES:
      fail(f"{SERIES_FOLDER}/{rel}: {size} bytes, over the {MAX_FILE_BYTES} allowed in results/")
  return [os.path.join(SERIES_FOLDER, rel) for rel in written]


def publish(study_name: str, workdir: str, command: list[str], timing: dict, repo: str,
            results_dir: str = RESULTS_DIR, note: str = "") -> str:
  """Copies the run into results_dir/<study> (replacing what was there); returns that folder."""
  if study_name not in STUDIES:
    fail(f"--study {study_name!r}: not one of {', '.join(STUDIES)}")
  study = STUDIES[study_name]
  report = os.path.join(workdir, study.report_json)
  if not os.path.isfile(report):
    fail(f"--workdir {workdir}: no {study.report_json} (has the run finished its analysis?)")
  with open(report) as f:
    json.load(f)
  config = resolve_config(command, study.launch)
  files = selected_files(workdir, study)
  for rel in files:
    size = os.path.getsize(os.path.join(workdir, rel))
    if size > MAX_FILE_BYTES:
      fail(f"{rel}: {size} bytes, over the {MAX_FILE_BYTES} allowed in results/ (keep bulky files out)")
  out_dir = os.path.join(results_dir, study_name)
  if os.path.realpath(workdir) == os.path.realpath(out_dir):
    fail(f"--workdir {workdir} is the published folder itself; publish from the run's own workdir (for the "
         f"dynamics grid: copy {out_dir}/dynamics/ into runs/dynamics/dynamics/ and analyse there)")
  cost = None   # what the parts of a study trained in parts cost, kept beside the whole
  if os.path.isfile(os.path.join(out_dir, "cost.json")):
    with open(os.path.join(out_dir, "cost.json")) as f:
      cost = f.read()
  if os.path.isdir(out_dir):
    shutil.rmtree(out_dir)
  os.makedirs(out_dir)
  if cost is not None:
    with open(os.path.join(out_dir, "cost.json"), "w") as f:
      f.write(cost)
  shutil.copyfile(report, os.path.join(out_dir, "report.json"))
  beside = os.path.join(os.path.dirname(report), "report.md")   # a report kept in a subfolder (dynamics: analysis/)
  top = ["report.json"]
  if os.path.dirname(study.report_json) and os.path.isfile(beside):
    shutil.copyfile(beside, os.path.join(out_dir, "report.md"))
    top.append("report.md")
  for rel in files:
    os.makedirs(os.path.dirname(os.path.join(out_dir, rel)), exist_ok=True)
    shutil.copyfile(os.path.join(workdir, rel), os.path.join(out_dir, rel))
  if study_name == "dynamics":
    files = files + publish_series(workdir, out_dir)
  run = {"study": study_name, "command": public_command(command, study_name), **git_commit(repo),
         "machine": machine(), **timing,
         "published_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "files": [*top, "config.json", *files]}
  if note:
    run["note"] = note
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config, f, indent=1, sort_keys=True)
    f.write("\n")
  with open(os.path.join(out_dir, "run.json"), "w") as f:
    json.dump(run, f, indent=1)
    f.write("\n")
  return out_dir


def shard_of(command: list[str], workdir: str, config: dict) -> dict | None:
  """{"index", "count", "runs"} of a dynamics command with --shard=I/N, its runs read from the plan the shard
  followed (under the workdir); None without --shard."""
  given = [word.split("=", 1)[1] for word in command if word.startswith("--shard=")]
  if not given:
    return None
  from mpcodec.studies.dynamics.train import shards   # pylint: disable=g-import-not-at-top
  index, count = shards.parse_shard(given[-1])
  path = shards.shard_plan_path(workdir, config["runs"], count)
  if not os.path.isfile(path):
    fail(f"--workdir {workdir}: no plan of {count} shards ({path}); did --shard={given[-1]} run there?")
  with open(path) as f:
    plan = json.load(f)
  return {"index": index, "count": count, "runs": plan["shards"][index - 1]}


def publish_cost(study_name: str, command: list[str], timing: dict, repo: str,
                 results_dir: str = RESULTS_DIR, workdir: str | None = None) -> str:
  """Adds a timed part of a study to results_dir/<study>/cost.json ({"parts": [...]}, one entry per command:
  a part timed again replaces its entry); returns the file's path. For the dynamics grid with a workdir
  (a shard that finished), also the series of every finished run there (`publish_series`)."""
  if study_name not in STUDIES:
    fail(f"--study {study_name!r}: not one of {', '.join(STUDIES)}")
  config = resolve_config(command, STUDIES[study_name].launch)
  out_dir = os.path.join(results_dir, study_name)
  os.makedirs(out_dir, exist_ok=True)
  part = {"command": public_command(command, study_name), **git_commit(repo), "machine": machine(), **timing,
          "config": config}
  if workdir is not None and study_name == "dynamics":
    part["series"] = publish_series(workdir, out_dir)
    shard = shard_of(command, workdir, config)
    if shard:
      part["shard"] = shard
  path = os.path.join(out_dir, "cost.json")
  parts = []
  if os.path.isfile(path):
    with open(path) as f:
      parts = [p for p in json.load(f)["parts"] if p["command"] != part["command"]]
  with open(path, "w") as f:
    json.dump({"study": study_name, "parts": parts + [part]}, f, indent=1, sort_keys=True)
    f.write("\n")
  return path


def main(argv: list[str] | None = None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  if "--" not in argv:
    fail("give the launch command after '--' (python -m results.publish --study=... --workdir=... -- python -m ...)")
  split = argv.index("--")
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--study", required=True, choices=sorted(STUDIES))
  parser.add_argument("--workdir", help="the finished run (with --cost_only: a dynamics shard whose finished "
                      "runs' series are published too)")
  parser.add_argument("--time_log", help="the run's /usr/bin/time -v output")
  parser.add_argument("--wall_time_s", type=float)
  parser.add_argument("--repo", default=os.getcwd(), help="repository whose code ran (default: here)")
  parser.add_argument("--earlier_wall_time_s", type=float, default=0.0,
                      help="wall time of stages an earlier launch of the same command and workdir finished "
                           "(reused, not retrained); recorded apart and added to the cost")
  parser.add_argument("--note", default="", help="what a reader must know about how the run was made")
  parser.add_argument("--cost_only", action="store_true", help="write only cost.json (a timed part of a study)")
  args = parser.parse_args(argv[:split])
  if (args.time_log is None) == (args.wall_time_s is None):
    fail("give exactly one of --time_log and --wall_time_s")
  if args.time_log:
    with open(args.time_log) as f:
      timing = parse_time_log(f.read(), args.time_log)
  else:
    timing = {"wall_time_s": args.wall_time_s}
  if args.earlier_wall_time_s:
    timing["earlier_stages_wall_time_s"] = args.earlier_wall_time_s
  if args.cost_only:
    print(f"wrote {publish_cost(args.study, argv[split + 1:], timing, args.repo, workdir=args.workdir)}")
    return
  if not args.workdir:
    fail("--workdir is required (the finished run to publish)")
  out_dir = publish(args.study, args.workdir, argv[split + 1:], timing, args.repo, note=args.note)
  print(f"published {args.study} to {out_dir}")


if __name__ == "__main__":
  main()
