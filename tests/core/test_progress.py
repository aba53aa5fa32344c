"""One progress bar per launch: absl log lines are written above the bar, whole, not through it; where
stderr is not a terminal the bar writes plain lines, with no carriage return."""

import io

import pytest
from absl import flags, logging

from mpcodec.core import progress


class _Terminal(io.StringIO):
  """A stream that says it is a terminal, as stderr does in an interactive shell."""

  def isatty(self):
    return True


@pytest.fixture
def absl_parsed():
  # As in a launch: absl has parsed its flags (before that it writes past any stream to sys.stderr).
  parsed_here = not flags.FLAGS.is_parsed()
  if parsed_here:
    flags.FLAGS.mark_as_parsed()
  try:
    logging.use_absl_handler()
    yield logging.get_absl_handler().python_handler
  finally:
    if parsed_here:
      flags.FLAGS.unparse_flags()


def test_log_lines_go_through_tqdm_write_while_the_bar_runs(monkeypatch, absl_parsed):
  handler = absl_parsed
  sink = io.StringIO()
  monkeypatch.setattr(handler, "stream", sink)
  written = []
  monkeypatch.setattr(progress.tqdm.tqdm, "write", staticmethod(lambda line, file=None: written.append(line)))
  with progress.bar(10, "steps", stream=_Terminal()) as bar:
    bar.update(3)
    logging.warning("checkpoint saved at step 3")
  assert any(line.endswith("checkpoint saved at step 3") for line in written), written
  assert "checkpoint saved" not in sink.getvalue()  # not written past the bar
  assert handler.stream is sink  # the handler's own stream is back after the bar


def test_on_a_terminal_the_bar_is_redrawn_in_place():
  terminal = _Terminal()
  with progress.bar(10, "steps", stream=terminal) as bar:
    bar.update(3)
    bar.refresh()
    bar.update(7)
  out = terminal.getvalue()
  assert "\r" in out
  frames = [frame for frame in out.split("\r") if frame.strip()]
  assert any("3/10" in frame for frame in frames) and "10/10" in frames[-1], frames


def test_off_a_terminal_the_bar_writes_whole_lines_without_carriage_returns(monkeypatch, absl_parsed):
  handler = absl_parsed
  log_file = io.StringIO()
  monkeypatch.setattr(handler, "stream", log_file)
  with progress.bar(1000, "codec", stream=log_file) as bar:
    for step in range(100):
      bar.update(10)
      bar.set_postfix_str(f"loss {1.0 / (step + 1):.3f}")
      if step % 10 == 0:
        logging.warning("checkpoint saved at step %d", 10 * (step + 1))
  out = log_file.getvalue()
  assert "\r" not in out
  assert handler.stream is log_file   # absl writes straight to its stream, no bar to redraw
  bar_lines = [line for line in out.splitlines() if line.startswith("codec: ")]
  assert bar_lines[0] == "codec: started, 1000 steps"
  # A line per tenth of the total: 100, 200, ..., 900, then the final line with the total.
  assert [line.split()[1] for line in bar_lines[1:-1]] == [f"{100 * i}/1000" for i in range(1, 10)]
  # As in the run loop: update, then the chunk's loss; a line shows the loss of the chunk it reports.
  assert bar_lines[1].endswith("left, loss 0.100"), bar_lines[1]
  assert bar_lines[-1].startswith("codec: 1000/1000 steps (100%) done in ")
  assert bar_lines[-1].endswith("loss 0.010")
  assert out.endswith(bar_lines[-1] + "\n")
  assert sum("checkpoint saved" in line for line in out.splitlines()) == 10


def test_off_a_terminal_a_bar_that_ends_short_says_where_it_stopped():
  log_file = io.StringIO()
  with pytest.raises(KeyboardInterrupt):
    with progress.bar(50, "dynamics", stream=log_file) as bar:
      bar.update(20)
      raise KeyboardInterrupt
  lines = log_file.getvalue().splitlines()
  assert "\r" not in log_file.getvalue()
  assert lines[0] == "dynamics: started, 50 steps"
  assert lines[-1].startswith("dynamics: 20/50 steps (40%) stopped after ")
  # tqdm's other calls the run loops make work on the line bar too.
  with progress.bar(4, "runs", unit="run", stream=log_file) as bar:
    bar.set_description("[1/2] mlp@mnist")
    bar.update(4)
  assert log_file.getvalue().splitlines()[-1].startswith("[1/2] mlp@mnist: 4/4 runs (100%) done in ")
