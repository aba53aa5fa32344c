"""What every study's figure must show a reader, checked on the figure objects the plot functions save.

`capture(monkeypatch)` makes `mpcodec.core.io.save_figure` record each figure (and still write it);
`problems(fig)` lists what a reader could not read: a data panel without an x-label, a y-label or a
title (a panel that says "no data: ..." needs only its title), a colour bar without a label, an image
panel without a title, a suptitle that overlaps a panel, a non-positive value drawn on a log axis.
"""

from __future__ import annotations

import numpy as np

from mpcodec.core import io


def capture(monkeypatch) -> list:
  """Every figure saved from now on, as (path, figure, problems found before it was closed)."""
  saved = []
  original = io.save_figure

  def save_and_record(fig, path, *args, **kwargs):
    saved.append((str(path), fig, problems(fig)))
    original(fig, path, *args, **kwargs)

  monkeypatch.setattr(io, "save_figure", save_and_record)
  return saved


def _texts(ax) -> list[str]:
  return [t.get_text() for t in ax.texts if t.get_visible() and t.get_text().strip()]


def _says_no_data(ax) -> bool:
  return any(text.startswith("no data") for text in _texts(ax))


def _is_image_panel(ax) -> bool:
  """A panel that shows a picture (a weight image, a data sample): no ticks, no axis labels needed."""
  return bool(ax.images) and not ax.get_xticks().size and not ax.get_yticks().size


def _log_axis_problems(ax, name: str) -> list[str]:
  found = []
  for axis, values_of in (("x", lambda line: line.get_xdata()), ("y", lambda line: line.get_ydata())):
    if (ax.get_xscale() if axis == "x" else ax.get_yscale()) != "log":
      continue
    for line in ax.lines:
      if not line.get_transform().contains_branch(ax.transData):
        continue   # a line in axes coordinates on this axis (axhline, axvline)
      values = np.asarray(values_of(line), np.float64)
      if values.size and np.any(~(values > 0)):
        found.append(f"{name}: line {line.get_label()!r} draws a non-positive {axis} on a log axis")
  return found


def problems(fig) -> list[str]:
  """What a reader could not read in `fig` (empty when nothing)."""
  found = []
  for i, ax in enumerate(fig.axes):
    name = f"axes {i} ({ax.get_title()!r})"
    colorbar = getattr(ax, "_colorbar", None)
    if colorbar is not None:
      if not (ax.get_ylabel().strip() or ax.get_xlabel().strip()):
        found.append(f"{name}: colour bar without a label")
      continue
    if not ax.get_visible():
      continue
    if not ax.axison:
      drawn = ax.images or ax.lines or ax.collections or ax.patches
      if drawn and not ax.get_title().strip() and not _texts(ax):
        found.append(f"{name}: a panel without axes, title or text")
      continue   # an unused cell of a grid (axis off, nothing drawn) shows nothing
    if not ax.get_title().strip():
      found.append(f"{name}: no title")
    if _says_no_data(ax) or _is_image_panel(ax):
      continue
    if not ax.get_xlabel().strip():
      found.append(f"{name}: no x-label")
    if not ax.get_ylabel().strip():
      found.append(f"{name}: no y-label")
    found += _log_axis_problems(ax, name)
  suptitle = getattr(fig, "_suptitle", None)
  if suptitle is not None and suptitle.get_text().strip():
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    top = suptitle.get_window_extent(renderer)
    for i, ax in enumerate(fig.axes):
      if ax.get_visible() and ax.get_tightbbox(renderer).overlaps(top):
        found.append(f"axes {i} ({ax.get_title()!r}) overlaps the suptitle")
  return found


def assert_readable(saved) -> None:
  """Every captured figure has no problem; the message names the file and each problem."""
  assert saved, "no figure was saved"
  bad = {path: found for path, _, found in saved if found}
  assert not bad, bad
