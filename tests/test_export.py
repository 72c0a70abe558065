"""export: TorchScript and ONNX files that reproduce PyTorch's probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _model_fixtures import write_tiny_model
from echoclr.commands import export as export_module
from echoclr.commands.export import ExportConfig, ProbabilityModel, export, run_exported
from echoclr.weights import load_classifier


@pytest.mark.parametrize("fmt,name", [("torchscript", "m.ts"), ("onnx", "m.onnx")])
def test_export_matches_pytorch(tmp_path, fmt, name, capsys):
    run = write_tiny_model(tmp_path / "model", clip_len=4)
    out = export(ExportConfig(model=str(run), format=fmt, out=str(tmp_path / name)))
    assert "max |probability difference|" in capsys.readouterr().out
    info = json.loads((tmp_path / f"{name}.json").read_text())
    assert info["input"]["shape"] == ["batch", 3, 4, 16, 16]
    assert info["parity"]["max_abs_diff"] <= 1e-4
    # Independently: a fresh batch of another size through the reloaded file (torch.jit.load or
    # onnxruntime) against the PyTorch model.
    clips = torch.rand(5, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ProbabilityModel(load_classifier(run)[0])(clips).numpy()
    got = run_exported(out, fmt, clips)
    assert got.shape == (5,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert ((got > 0) & (got < 1)).all()


def test_parity_failure_raises_and_writes_nothing(tmp_path, monkeypatch):
    run = write_tiny_model(tmp_path / "model")
    monkeypatch.setattr(export_module, "run_exported",
                        lambda path, fmt, clips: np.full(len(clips), 2.0, np.float32))
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        export(ExportConfig(model=str(run), out=str(tmp_path / "m.ts")))
    assert not list(tmp_path.glob("*m.ts*"))


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="tflite"):
        export(ExportConfig(model=str(tmp_path), format="tflite"))
