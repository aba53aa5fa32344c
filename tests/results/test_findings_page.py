"""The findings page (results/README.md) is what results.findings writes from the published JSON, every
published report.json holds the keys the page reads, and a study not published gets a "not yet run" entry."""

import json
import os
import shutil

import pytest

from results import findings, sections

RESULTS_DIR = findings.RESULTS_DIR
PUBLISHED = [entry.key for entry in findings.ENTRIES
             if os.path.isfile(os.path.join(RESULTS_DIR, entry.key, "report.json"))]


def test_committed_page_equals_the_regenerated_one():
  with open(os.path.join(RESULTS_DIR, findings.PAGE)) as f:
    committed = f.read()
  assert committed == findings.render_page(), "results/README.md is stale: run python -m results.findings"


def test_some_studies_are_published():
  assert {"mono_poly", "toy_superposition", "codec_ground_truth"} <= set(PUBLISHED)


@pytest.mark.parametrize("study", PUBLISHED)
def test_published_report_matches_its_schema(study):
  with open(os.path.join(RESULTS_DIR, study, "report.json")) as f:
    report = json.load(f)
  with open(os.path.join(RESULTS_DIR, study, "run.json")) as f:
    run = json.load(f)
  assert findings.SCHEMA[study], f"{study}: no schema declared"
  assert findings.missing_keys(report, study) == []
  assert findings.missing_run_keys(run) == []
  for name in run["files"]:
    assert os.path.isfile(os.path.join(RESULTS_DIR, study, name)), f"{study}: run.json lists {name}, absent"
  assert not run["dirty"], f"{study}: published from a tree with uncommitted changes"


def _copy_published(tmp_path, study):
  shutil.copytree(os.path.join(RESULTS_DIR, study), tmp_path / study)
  return tmp_path / study


def test_a_report_missing_a_key_is_refused_naming_it(tmp_path):
  folder = _copy_published(tmp_path, "mono_poly")
  report = json.loads((folder / "report.json").read_text())
  del report["hypotheses"]["H2"]["test"]["p_adjusted"]
  (folder / "report.json").write_text(json.dumps(report))
  with pytest.raises(KeyError, match=r"mono_poly: missing report.json: hypotheses.H2.test.p_adjusted"):
    findings.read_study("mono_poly", str(tmp_path))


def test_a_run_record_without_wall_time_is_refused(tmp_path):
  folder = _copy_published(tmp_path, "mono_poly")
  run = json.loads((folder / "run.json").read_text())
  del run["wall_time_s"]
  (folder / "run.json").write_text(json.dumps(run))
  with pytest.raises(KeyError, match="run.json: wall_time_s"):
    findings.read_study("mono_poly", str(tmp_path))


def test_unpublished_studies_say_not_yet_run_with_their_command(tmp_path):
  _copy_published(tmp_path, "mono_poly")
  page = findings.render_page(str(tmp_path))
  sections = page.split("\n## ")[1:]
  assert len(sections) == len(findings.ENTRIES)
  for entry, section in zip(findings.ENTRIES, sections):
    assert section.startswith(entry.title)
    if entry.key == "mono_poly":
      assert "Not yet run" not in section
    else:
      assert "**Not yet run.**" in section
      assert entry.command in section or entry.pending in section


def test_page_numbers_follow_the_json(tmp_path):
  """A changed estimate in report.json changes the page: the numbers are read, not typed."""
  folder = _copy_published(tmp_path, "mono_poly")
  report = json.loads((folder / "report.json").read_text())
  report["hypotheses"]["H3"]["test"]["estimate"] = 123.456
  report["hypotheses"]["H3"]["verdict"] = "inconclusive"
  (folder / "report.json").write_text(json.dumps(report))
  page = findings.render_page(str(tmp_path))
  assert "| 123 [" in page and "**inconclusive**" in page and "H3 (inconclusive)" in page


@pytest.mark.parametrize("value,text", [(0.0151, "0.0151"), (2.9214, "2.92"), (16, "16"), (None, "n/a"),
                                        (float("nan"), "n/a"), (1.5e-7, "1.5e-7")])
def test_number_format(value, text):
  assert sections.num(value) == text


def test_check_mode_fails_on_a_stale_page(tmp_path, monkeypatch, capsys):
  _copy_published(tmp_path, "mono_poly")
  (tmp_path / findings.PAGE).write_text("# stale\n")
  monkeypatch.setattr(findings, "RESULTS_DIR", str(tmp_path))
  assert findings.main(["--check"]) == 1
  assert "error: README.md differs" in capsys.readouterr().err
  assert findings.main([]) == 0 and findings.main(["--check"]) == 0


def test_a_measured_part_of_an_unrun_study_is_shown_beside_not_yet_run(tmp_path):
  _copy_published(tmp_path, "mono_poly")
  (tmp_path / "dynamics").mkdir()
  cost = {"command": "python -m launch.dynamics --config=configs/dynamics.py:arch=mlp_128_64,dataset=mnist",
          "commit": "0" * 40, "dirty": False, "machine": {"cpu_model": "Some CPU", "logical_cores": 2},
          "wall_time_s": 754.0, "config": {"runs": ["mlp_128_64@mnist"],
                                           "base": {"num_seeds": 5, "num_steps": 2000}}}
  (tmp_path / "dynamics" / "cost.json").write_text(json.dumps({"parts": [cost, dict(cost, wall_time_s=30.0)]}))
  section = findings.render_page(str(tmp_path)).split("\n## Training dynamics")[1].split("\n## ")[0]
  assert "**Not yet run.**" in section and "12.6 min wall" in section and "Some CPU" in section
  assert "1 configuration (mlp_128_64@mnist), 5 seeds x 2,000 steps" in section
  assert section.count("- **Cost of a part**") == 2 and "30 s wall" in section


def test_reused_stages_and_notes_are_shown_in_the_cost(tmp_path):
  folder = _copy_published(tmp_path, "mono_poly")
  run = json.loads((folder / "run.json").read_text())
  run.update(wall_time_s=600.0, earlier_stages_wall_time_s=240.0, note="reduced: one K")
  (folder / "run.json").write_text(json.dumps(run))
  page = findings.render_page(str(tmp_path))
  assert "14.0 min wall in all (4.0 min for the stages an earlier launch" in page
  assert "10.0 min for this launch" in page and "- **How it was run**: reduced: one K" in page


def test_a_replication_row_missing_its_verdict_is_refused(tmp_path):
  folder = _copy_published(tmp_path, "codec_ground_truth")
  report = json.loads((folder / "report.json").read_text())
  del report["replication"][2]["verdict"]
  (folder / "report.json").write_text(json.dumps(report))
  with pytest.raises(KeyError, match=r"replication\[2\]\.verdict"):
    findings.read_study("codec_ground_truth", str(tmp_path))
