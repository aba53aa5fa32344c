"""One progress bar per launch: absl log lines are written above the bar, whole, not through it."""

import io

from absl import flags, logging

from mpcodec.core import progress


def test_log_lines_go_through_tqdm_write_while_the_bar_runs(monkeypatch):
  # As in a launch: absl has parsed its flags (before that it writes past any stream to sys.stderr).
  parsed_here = not flags.FLAGS.is_parsed()
  if parsed_here:
    flags.FLAGS.mark_as_parsed()
  try:
    logging.use_absl_handler()
    handler = logging.get_absl_handler().python_handler
    sink = io.StringIO()
    monkeypatch.setattr(handler, "stream", sink)
    written = []
    monkeypatch.setattr(progress.tqdm.tqdm, "write", staticmethod(lambda line, file=None: written.append(line)))
    with progress.bar(10, "steps") as bar:
      bar.update(3)
      logging.warning("checkpoint saved at step 3")
    assert any(line.endswith("checkpoint saved at step 3") for line in written), written
    assert "checkpoint saved" not in sink.getvalue()  # not written past the bar
    assert handler.stream is sink  # the handler's own stream is back after the bar
  finally:
    if parsed_here:
      flags.FLAGS.unparse_flags()
