"""What a report shows of the statistics: the smoke-run banner and strict-JSON dicts of results."""

from __future__ import annotations

import dataclasses
from typing import Any

from mpcodec.core import io as report_io


def smoke_banner(reason: str) -> str:
  """One Markdown line for the top of a report whose verdicts all read "cannot be tested"."""
  reason = " ".join(str(reason).split()).rstrip(".")
  return (f"> **No verdicts: {reason}.** Every hypothesis and claim below reads \"cannot be tested\"; "
          "its figures only show that the pipeline runs.")


def to_json(result: Any) -> Any:
  """A result (dataclass, mapping or sequence of them) as plain Python for strict JSON: NaN / Inf -> None."""
  if dataclasses.is_dataclass(result) and not isinstance(result, type):
    result = dataclasses.asdict(result)
  elif isinstance(result, (list, tuple)):
    return [to_json(r) for r in result]
  elif isinstance(result, dict):
    return {str(k): to_json(v) for k, v in result.items()}
  return report_io.jsonable(result)
