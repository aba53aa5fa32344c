"""Tests of the report file helpers."""

import json
import stat
import subprocess
import sys

from mpcodec.core import io
from tests import support


def test_write_json_once_keeps_the_first_payload(tmp_path):
  path = tmp_path / "plans" / "plan.json"
  assert io.write_json_once(path, {"shards": [["a@x"], ["b@x"]], "flops": float("nan")})
  assert not io.write_json_once(path, {"shards": [["b@x"], ["a@x"]]})
  assert json.loads(path.read_text()) == {"shards": [["a@x"], ["b@x"]], "flops": None}
  assert [p.name for p in path.parent.iterdir()] == ["plan.json"]   # no temporary file left behind


def test_written_files_get_the_mode_of_the_umask_not_a_private_one(tmp_path):
  for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
    script = (f"import os; os.umask({umask:#o}); from mpcodec.core import io; "
              f"io.write_text({str(tmp_path / 'a.txt')!r}, 'x'); io.write_json_once({str(tmp_path / 'b.json')!r}, 1)")
    for name in ("a.txt", "b.json"):
      (tmp_path / name).unlink(missing_ok=True)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=support.REPO_ROOT, timeout=60)
    assert [stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("a.txt", "b.json")] == [mode, mode], umask
