"""Evaluation-callback base: rows of every rank exactly once, sampler repeats dropped, baselines computed once."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
from torch.utils.data import DataLoader, DistributedSampler

import mrisr.callbacks.base as base
from conftest import TESTS_DIR, run_command
from mrisr.callbacks import ImageMetricsCallback, MontageCallback
from mrisr.callbacks.cord import CordMorphometryCallback
from mrisr.core.errors import MrisrInputError
from mrisr.inference import interpolate_volume
from support.replay import ReplayModule
from support.synthetic import spine_item

SUPPORT = TESTS_DIR / "support"
N_SUBJECTS = 5  # odd: with 2 ranks the distributed sampler repeats subject00 on rank 1
TABLES = ("test_metrics.csv", "cord_metrics.csv", "cord_perslice.csv")


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def record_positions(n_items: int, world: int, shuffle: bool) -> list[int]:
    """Positions of the records that every rank creates for a DistributedSampler over ``n_items`` items."""
    items = [{"name": f"s{i}", "setting": "T3"} for i in range(n_items)]
    positions = []
    for rank in range(world):
        sampler = DistributedSampler(items, num_replicas=world, rank=rank, shuffle=shuffle, seed=3)
        trainer = SimpleNamespace(test_dataloaders=DataLoader(items, sampler=sampler, batch_size=1), global_rank=rank)
        for batch_idx in range(len(sampler)):
            record = base.new_record(trainer, 0, batch_idx, ("s", "T3"), 0)
            if record is not None:
                assert record.rank == rank
                positions.append(record.position)
    return positions


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("n_items", "world"), [(5, 2), (7, 3), (4, 2), (2, 4)])
def test_distributed_sampler_repeats_are_not_evaluated(n_items: int, world: int, shuffle: bool) -> None:
    """Every position of the sampled sequence is evaluated by exactly one rank; the padding repeats by none."""
    positions = record_positions(n_items, world, shuffle)
    assert sorted(positions) == list(range(n_items))


def test_merge_keeps_each_item_once_in_test_set_order() -> None:
    def record(key: tuple, position: int, rank: int) -> base.ItemRecord:
        return base.ItemRecord(key, 0, position, rank, rows={"metrics": [{"subject": key[1], "rank": rank}]})

    # Ranks that each saw the whole test set (no distributed sampler): identity keys collapse across ranks.
    rank0 = [record((0, "a", "T3", 0), 0, 0), record((0, "b", "T3", 0), 1, 0), record((0, "a", "T3", 1), 2, 0)]
    rank1 = [record((0, "b", "T3", 0), 1, 1), record((0, "a", "T3", 0), 0, 1), record((0, "a", "T3", 1), 2, 1)]
    merged = base.merge_records([rank0, rank1])
    assert [(r.key[1], r.key[3], r.rank) for r in merged] == [("a", 0, 0), ("b", 0, 0), ("a", 1, 0)]


def test_test_loader_with_several_volumes_per_batch_is_refused() -> None:
    items = [{"name": "a"}, {"name": "b"}]
    trainer = SimpleNamespace(test_dataloaders=[DataLoader(items, batch_size=2)], global_rank=0)
    with pytest.raises(MrisrInputError, match="batch_size=2"):
        base.new_record(trainer, 0, 0, ("a", "T3"), 0)


def test_baselines_are_interpolated_once_per_volume_for_all_callbacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Image metrics (3 baselines), cord (2) and montage (2) need 7 interpolations per volume; 3 are computed."""
    calls: Counter[tuple[int, int]] = Counter()

    def counting(volume, grid, order=3):
        calls[(id(volume), order)] += 1
        return interpolate_volume(volume, grid, order=order)

    monkeypatch.setattr(base, "interpolate_volume", counting)
    items = [spine_item(i) for i in range(3)]
    callbacks = [
        ImageMetricsCallback(str(tmp_path)),
        CordMorphometryCallback(str(tmp_path), baselines=["linear", "cubic"], qc_plots=False),
        MontageCallback(str(tmp_path), max_volumes=3),
    ]
    trainer = L.Trainer(
        accelerator="cpu", logger=False, callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(ReplayModule(), dataloaders=DataLoader(items, batch_size=1, collate_fn=lambda b: b[0]), verbose=False)
    assert sum(calls.values()) == 3 * len(items)
    assert set(calls.values()) == {1}
    assert {order for _, order in calls} == {0, 1, 3}
    # The shared cubic baseline is the plain interpolation: its PSNR row equals one computed from scratch.
    from mrisr.eval.image import image_metrics

    cubic = interpolate_volume(items[1]["lr"], items[1]["grid"], order=3)
    expected = float(image_metrics(cubic, items[1]["hr"])["psnr"])
    rows = read_rows(tmp_path / "test_metrics.csv")
    value = {(r["subject"], r["method"], r["metric"]): float(r["value"]) for r in rows}
    assert value[("subject01", "cubic", "psnr")] == pytest.approx(expected, rel=1e-12)
    assert base._BASELINES.get(trainer) is None  # released at the end of the test epoch


def test_cache_returns_the_baseline_of_the_volume_asked_for() -> None:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    a, b = spine_item(0), spine_item(3)
    first = base.interpolation_baseline(trainer, a["lr"], a["grid"], "cubic")
    assert base.interpolation_baseline(trainer, a["lr"], a["grid"], "cubic") is first
    other = base.interpolation_baseline(trainer, b["lr"], b["grid"], "cubic")
    np.testing.assert_array_equal(other.data, interpolate_volume(b["lr"], b["grid"], order=3).data)
    assert not np.array_equal(other.data, first.data)
    with pytest.raises(ValueError, match="unknown baselines"):
        base.interpolation_baseline(trainer, a["lr"], a["grid"], "quintic")


def test_two_process_ddp_testing_writes_every_subject_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """trainer=ddp_cpu (2 gloo ranks, 5 subjects: the sampler pads rank 1) writes what one process writes."""
    ddp = tmp_path / "ddp"
    proc = run_command([str(SUPPORT / "replay_run.py"), str(ddp), "ddp_cpu", str(N_SUBJECTS)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.syspath_prepend(str(SUPPORT))
    from replay_run import run

    single = tmp_path / "single"
    run(single, "cpu", N_SUBJECTS)
    subjects = {f"subject{i:02d}" for i in range(N_SUBJECTS)}
    for name in TABLES:
        rows = read_rows(ddp / name)
        per_subject = Counter(r["subject"] for r in rows)
        assert set(per_subject) == subjects
        # Same number of rows for every subject: none is lost on another rank, none counted twice.
        assert len(set(per_subject.values())) == 1, per_subject
        assert (ddp / name).read_text() == (single / name).read_text()
    image_rows = read_rows(ddp / "test_metrics.csv")
    assert Counter((r["subject"], r["method"], r["metric"]) for r in image_rows).most_common(1)[0][1] == 1
    assert json.loads((ddp / "metrics.json").read_text()) == json.loads((single / "metrics.json").read_text())
    assert sorted(p.name for p in ddp.glob("montage_*.png")) == ["montage_subject00.png", "montage_subject01.png"]
