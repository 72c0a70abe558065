"""``echoclr synth``: write the synthetic echo cohort (:mod:`echoclr.synth`) to a folder.

AVI videos, a few multi-frame DICOMs with fake identifiers, ``manifest.csv`` and the ground
truth (``truth.csv`` per study, ``truth_videos.csv`` per video); rendered in parallel.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from echoclr.errors import UserError
from echoclr.synth.cohort import MANIFEST_COLUMNS, SynthConfig, write_study


def synthesize(cfg: SynthConfig) -> Path:
    """Write the cohort into `cfg.out`: videos/, dicom/, manifest.csv, truth.csv, truth_videos.csv.

    Returns:
        The path of manifest.csv (video paths in it are relative to its folder).
    """
    if cfg.patients < 1 or cfg.size < 16:
        message = f"need patients >= 1 and size >= 16, got {cfg.patients} and {cfg.size}"
        raise UserError(f"{cfg.out}: {message}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    indices = range(cfg.patients)
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            results = list(tqdm(pool.map(write_study, [cfg] * cfg.patients, indices, chunksize=2),
                                total=cfg.patients, desc="synth", disable=None))
    else:
        results = [write_study(cfg, i) for i in tqdm(indices, desc="synth", disable=None)]
    manifest = pd.DataFrame([r for rows, _, _ in results for r in rows], columns=MANIFEST_COLUMNS)
    pd.DataFrame([v for _, videos, _ in results for v in videos]).to_csv(
        out / "truth_videos.csv", index=False, float_format="%.6g")
    pd.DataFrame([t for _, _, t in results]).to_csv(out / "truth.csv", index=False,
                                                    float_format="%.6g")
    manifest.to_csv(out / "manifest.csv", index=False)
    return out / "manifest.csv"

