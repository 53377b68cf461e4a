"""Helpers of the experiment scripts: frame tables, method rows, ordering goals, scale files, the training path,
RRDBNet sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO_ROOT
from mrisr.core.errors import MrisrInputError
from mrisr.experiment.helpers import git_commit, load_scale, scale_names, train_model
from mrisr.nets.pretrained import resolve_weights
from mrisr.nets.rrdbnet import RRDBNet
from mrisr.report import summarize
from mrisr.report.export import format_cell, method_rows, ordering_goals, write_frame_table


def tidy(values: dict[str, list[float]], metric: str = "psnr") -> pd.DataFrame:
    rows = [{"label": "x", "run": "x", "setting": "s", "subject": f"s{i}", "method": m, "metric": metric, "value": v}
            for m, vs in values.items() for i, v in enumerate(vs)]  # fmt: skip
    return pd.DataFrame(rows)


def test_method_rows_are_means_in_the_requested_order():
    summary = summarize(tidy({"b": [1.0, 3.0], "a": [10.0, 12.0]}), reference="a")
    frame = method_rows(summary, ["psnr"], ["a", "b"])
    assert list(frame["method"]) == ["a", "b"] and list(frame["psnr"]) == [11.0, 2.0] and list(frame["n"]) == [2, 2]


def test_ordering_goals_respect_direction_and_strictness():
    summary = summarize(tidy({"lo": [1.0, 1.0], "hi": [2.0, 2.0], "eq": [2.0, 2.0]}), reference=None)
    goals = ordering_goals(summary, [("lo", "<", "hi"), ("hi", "≤", "eq"), ("hi", "<", "eq")], ["psnr"], ())
    assert list(goals["passed"]) == [True, True, False]
    err = summarize(tidy({"lo": [1.0, 1.0], "hi": [2.0, 2.0]}, metric="err"), reference=None)
    assert not ordering_goals(err, [("lo", "<", "hi")], ["err"], ("err",))["passed"].iloc[0]  # lower is better
    with pytest.raises(ValueError, match="relation"):
        ordering_goals(summary, [("lo", ">", "hi")], ["psnr"], ())


def test_frame_table_writes_three_formats(tmp_path: Path):
    frame = pd.DataFrame({"a_b": [1.23456, np.nan], "ok": [True, False]})
    paths = write_frame_table(frame, tmp_path / "t", "Caption.", source="here")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    assert pd.read_csv(paths[0])["a_b"].iloc[0] == 1.23456  # full precision in the CSV
    assert "| 1.235 | yes |" in paths[1].read_text() and "a\\_b" in paths[2].read_text()
    assert format_cell(1e-5) == "1.00e-05" and format_cell(float("inf")) == "–" and format_cell(1234.5) == "1234"


def test_git_commit_reports_errors(tmp_path: Path):
    record = git_commit(tmp_path)  # not a checkout
    assert record["commit"] is None and "error" in record


@pytest.mark.parametrize("paper", ["dewey2024", "giraldo2024", "graf2024"])
def test_every_paper_has_smoke_and_paper_scale_files(paper: str):
    folder = REPO_ROOT / "experiments" / paper
    assert {"paper", "smoke"} <= set(scale_names(folder))
    smoke, full = load_scale(folder, "smoke"), load_scale(folder, "paper")
    assert smoke["description"] and isinstance(smoke["max_steps"], int)
    assert full["max_steps"] is None or full["max_steps"] > smoke["max_steps"]
    assert set(smoke["methods"]) == set(full["methods"])  # the same trained methods at both scales
    with pytest.raises(MrisrInputError, match="no scale file"):
        load_scale(folder, "huge")


def test_dewey_cpu_scale_scores_only_spines_its_prior_never_saw():
    """The cpu scale fits ``smore_prior``: its subjects must be outside the prior's training and validation data."""
    folder = REPO_ROOT / "experiments" / "dewey2024"
    cpu = load_scale(folder, "cpu")
    assert cpu["model"] == "smore_prior" and cpu["thickness_given"] is False and cpu["max_steps"] > 0
    provenance = torch.load(resolve_weights("smore_prior"), map_location="cpu", weights_only=False)["provenance"]
    seen = {Path(source).parent.name for source in [*provenance["train_sources"], *provenance["val_sources"]]}
    assert cpu["subjects"] and not seen & set(cpu["subjects"])


def test_train_model_keeps_the_step_budget_validates_and_loads_the_best_checkpoint(tmp_path: Path):
    torch.set_num_threads(1)
    overrides = ["++data.batch_size=2", "++data.val_patches=2", "trainer.precision=32-true",
                 "trainer.limit_val_batches=1", "trainer.deterministic=true"]  # fmt: skip
    trained = train_model(overrides, tmp_path / "run", max_steps=4, seed=0, validations=2)
    assert trained.steps == 4 and trained.record["patches_per_epoch"] == 4  # 2 batches of 2 per validation
    best = trained.best_checkpoint
    assert best is not None and best.parent == tmp_path / "run" / "checkpoints" and best.exists()
    assert (tmp_path / "run" / "metrics.json").exists() and trained.record["monitor"] == "val/loss"
    state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    for name, value in trained.model.state_dict().items():
        assert torch.equal(value, state[name]), name  # the returned model carries the best checkpoint's weights


@pytest.mark.parametrize("scale", [1, 2])
def test_rrdbnet_accepts_planes_of_any_size_at_scales_1_and_2(scale: int):
    torch.manual_seed(0)
    net = RRDBNet(1, 1, scale=scale, num_feat=4, num_block=1, num_grow_ch=2).eval()
    x = torch.rand(2, 1, 13, 18)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (2, 1, 13 * scale, 18 * scale)
        # The cropped output of a padded plane equals the output of the explicitly reflect-padded plane, cropped.
        factor = net.unshuffle_factor
        manual = net(torch.nn.functional.pad(x, (0, (-18) % factor, 0, (-13) % factor), mode="reflect"))
        assert torch.allclose(out, manual[..., : 13 * scale, : 18 * scale])


def test_append_invocation_accumulates_records(tmp_path: Path):
    from mrisr.experiment.helpers import append_invocation

    path = tmp_path / "run.json"
    append_invocation(path, {"scale": "smoke", "wall_s": 1.0})
    record = append_invocation(path, {"scale": "paper"})
    assert [i["scale"] for i in record["invocations"]] == ["smoke", "paper"]
    assert record["invocations"][0]["host"]["cpus"] >= 1


def test_an_invocation_header_names_the_commit_scale_and_the_command_that_reruns_it():
    from mrisr.experiment.helpers import Invocation

    invocation = Invocation.start(REPO_ROOT / "experiments" / "dewey2024", "smoke", ["--subjects", "errsm_11"])
    header = invocation.header()
    assert header["command"] == "python experiments/dewey2024/run.py --subjects errsm_11"
    assert header["scale"] == "smoke" and header["wall_s"] >= 0 and "commit" in header
    assert header["started"].endswith("+00:00")
