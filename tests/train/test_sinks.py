"""Sinks: JSONL lines are valid JSON (NaN becomes null), a resumed JSONL drops lines after the checkpoint,
and the rich progress bar consumes records without printing anything else."""

import io
import json
import math

from glsverify.train.sinks import JsonlSink, RichProgressSink, RunInfo, StepRecord


def record(step, loss=1.0):
    return StepRecord(step=step, epoch=step / 10, eps=0.1, loss=loss, robust_loss=None, natural_loss=0.5,
                      train_accuracy=0.9, train_certified=None, pop_evals_per_s=100.0, time=float(step),
                      lr_factor=1.0, extra={"sigma_mean": 0.01, "step": 99})


def test_jsonl_is_strict_json_and_resuming_drops_later_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    sink = JsonlSink(path)
    sink.start(RunInfo(10, 0, 10, "pgpe", "crown"))
    for step in range(1, 6):
        sink.record(record(step, loss=math.nan if step == 2 else 1.0))
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5]  # extra never overrides a field
    assert lines[1]["loss"] is None and lines[0]["sigma_mean"] == 0.01 and lines[0]["robust_loss"] is None
    resumed = JsonlSink(path)
    resumed.start(RunInfo(10, 3, 10, "pgpe", "crown"))
    resumed.record(record(4))
    resumed.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3, 4]


def test_rich_progress_accepts_records_and_events():
    sink = RichProgressSink()
    sink.progress.console.file = io.StringIO()
    sink.start(RunInfo(5, 0, 5, "grad", "ibp"))
    sink.record(record(1))
    sink.event("interrupted", {"signal": 2, "step": 1})
    sink.close()
    assert "continue with --resume" in sink.progress.console.file.getvalue()
