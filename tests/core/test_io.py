"""Tests of the report file helpers."""

import json

from mpcodec.core import io


def test_write_json_once_keeps_the_first_payload(tmp_path):
  path = tmp_path / "plans" / "plan.json"
  assert io.write_json_once(path, {"shards": [["a@x"], ["b@x"]], "flops": float("nan")})
  assert not io.write_json_once(path, {"shards": [["b@x"], ["a@x"]]})
  assert json.loads(path.read_text()) == {"shards": [["a@x"], ["b@x"]], "flops": None}
  assert [p.name for p in path.parent.iterdir()] == ["plan.json"]   # no temporary file left behind
