"""`torchrun -m echoclr pretrain` with two gloo processes on CPU."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import torch

from echoclr.weights import load_encoder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_pretrain(tiny_cache, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(_free_port()), "-m", "echoclr", "pretrain", str(tiny_cache),
           "--out", str(out), "--encoder", "r3d_tiny", "--width", "4", "--batch-size", "3",
           "--max-steps", "2", "--workers", "0", "--no-progress", "--log-every", "1",
           "--period", "2", "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # only rank 0 writes
    # 2 processes x 3 pairs: every query sees 2 * 6 - 1 candidates minus same-study masks.
    assert rows[0]["chance_nt_xent"] <= torch.log(torch.tensor(11.0)).item() + 1e-6
    encoder, meta = load_encoder(out / "encoder.pt")
    assert meta["pretrain_config"]["batch_size"] == 3
