"""The suite's markdown: the machine and versions, then one table row per row of its JSON, in order.

Flag-free (unlike `benchmarks.suite`), so that a test can import it beside other mains.
"""

from __future__ import annotations


def format_figure(value: float | None) -> str:
  if value is None:
    return "-"
  return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def format_ratio(ratio: float | None) -> str:
  return "-" if ratio is None else f"{ratio:.2f}x"


def _cpu(row: dict) -> str:
  cpu = row.get("cpu_seconds") or {}
  if "mpcodec" not in cpu or "peer" not in cpu or not cpu["mpcodec"]:
    return "-"
  # Work per CPU second, mpcodec over peer: the same work, so the ratio of the peer's CPU seconds to ours.
  return f"{cpu['mpcodec']:.2f} / {cpu['peer']:.2f} ({cpu['peer'] / cpu['mpcodec']:.2f}x)"


def markdown(record: dict) -> str:
  """The suite's markdown: machine, versions, then one table row per JSON row, in the same order."""
  machine, versions = record["machine"], record["versions"]
  lines = [f"# Benchmark suite, size {record['size']}", "",
           f"- CPU: {machine['cpu_model']}, {machine['cores']} cores; device: {machine.get('device_kind', '?')} "
           f"x {machine.get('device_count', '?')} ({machine.get('platform', '?')})",
           f"- load average before / after: {machine['load_average']} / {record['load_average_after']}",
           f"- XLA_FLAGS: `{machine['xla_flags'] or '(none)'}`",
           "- versions: " + ", ".join(f"{name} {version or 'not installed'}" for name, version in versions.items()),
           f"- PyTorch peers: {record['peers']}", "",
           "| benchmark | work | unit | mpcodec | peer | peer figure | ratio | CPU s mpcodec / peer | note |",
           "|---|---|---|---|---|---|---|---|---|"]
  for row in record["rows"]:
    lines.append(f"| {row['benchmark']} | {row['work']} | {row['unit']} | {format_figure(row['mpcodec'])} | "
                 f"{row['peer_name']} | {format_figure(row['peer'])} | {format_ratio(row['ratio'])} | {_cpu(row)} | "
                 f"{row['note']} |")
  for name, run in record["benchmarks"].items():
    if run["returncode"] != 0:
      lines.append(f"| {name} | failed (exit {run['returncode']}) | | | | | | | {run['error']} |")
  lines += ["", "Ratios are mpcodec / peer (higher: mpcodec faster), measured in one process each; CPU model: "
            f"{machine['cpu_model']}.", ""]
  return "\n".join(lines)
