"""Parameters of the synthetic echo cohort: a study's heart, its machine preset, its videos.

Each patient has one study. The heart (`Anatomy`) sets the study's labels and is shared by all
its videos; so is the preset (`Preset`), with small clip-to-clip jitter drawn per video (`Clip`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, ndtri

WALL_MEAN_MM = 10.0  # population mean of (septum + posterior wall) / 2 at end-diastole
WALL_SD_MM = 1.8  # population spread of that mean thickness
LVH_NOISE_SD = 0.65  # measurement noise of the labelled thickness, in units of WALL_SD_MM
AS_NOISE_SD = 0.75  # noise of the report's AS grading, in units of the latent severity's SD


@dataclass(frozen=True)
class Machine:
    """An ultrasound scanner model: fixes the look shared by every study scanned on it."""

    name: str  # fake vendor label burned into the frame
    psf_axial: float  # point-spread SD along the beam, polar samples
    psf_lateral: float  # point-spread SD across beams, beams
    dynamic_range_db: float  # log-compression window, dB
    gamma: float  # display curve exponent
    fan_deg: float  # default sector width, degrees
    fan_radius: float  # sector radius as a fraction of the frame height (display zoom)
    noise_db: float  # electronic noise floor relative to tissue, dB
    text_level: int  # grey level of the burned-in text, 0..255
    text_right: bool  # vendor block in the top-right (else top-left) corner


# A lab's few scanner models: many studies share one, so the look alone cannot tell studies apart.
MACHINES = (
    Machine("SONOSYNTH A5", 0.8, 1.0, 56.0, 1.0, 76.0, 0.97, -44.0, 230, False),
    Machine("ECHOFAKE X7", 1.1, 1.4, 50.0, 0.85, 84.0, 0.92, -40.0, 200, True),
    Machine("PSEUDOVUE 9", 0.7, 1.2, 62.0, 1.15, 72.0, 1.0, -46.0, 255, False),
    Machine("IMAGINUS C3", 1.0, 0.9, 52.0, 0.95, 80.0, 0.89, -38.0, 170, True),
    Machine("FAUXSCAN E2", 0.9, 1.6, 58.0, 1.05, 70.0, 0.95, -42.0, 215, False),
)


@dataclass(frozen=True)
class Anatomy:
    """One patient's heart; lengths in mm at end-diastole."""

    hr_bpm: float  # heart rate of the study
    lv_edd_mm: float  # LV internal diameter, end-diastole
    ef: float  # ejection fraction (sets wall motion amplitude)
    septum_mm: float  # interventricular septum thickness
    posterior_mm: float  # LV posterior wall thickness
    wall_mm: float  # (septum + posterior) / 2: the true LVH parameter
    lv_length_mm: float  # mitral annulus to apex
    aortic_root_mm: float  # aortic root inner diameter
    la_mm: float  # left atrium antero-posterior diameter
    rv_mm: float  # RV outflow/body depth under the chest wall
    chest_mm: float  # chest wall (habitus) depth above the RV
    echogenicity: float  # myocardial brightness factor
    axis_tilt_deg: float  # LV long axis angle in the PLAX plane (+ = apex deeper)
    annulus_x_mm: float  # lateral position of the mitral annulus under the probe
    as_severity: float  # latent AS severity (standard normal): the true AS parameter
    av_opening: float  # systolic aortic leaflet separation / root diameter
    av_calcification: float  # 0..1, brightness and thickness of the aortic leaflets
    mac: float  # 0..1, mitral annular calcification
    texture_seed: int  # seed of the myocardial texture and wall ripple (the heart's fingerprint)
    lvh: int  # label: measured thickness above threshold
    severe_as: int  # label: graded severe on the report


@dataclass(frozen=True)
class Preset:
    """Machine and sonographer settings of one study (before per-video jitter)."""

    machine: int  # index into MACHINES
    fps: int  # frame rate, frames/s
    depth_mm: float  # imaging depth of the PLAX videos
    fan_deg: float  # sector width, degrees
    fan_radius: float  # sector radius as a fraction of the frame height (zoom)
    gain_db: float  # overall gain
    tgc_db: tuple[float, ...]  # time-gain curve at 5 evenly spaced depths, dB
    attenuation_db_mm: float  # uncompensated attenuation slope, dB/mm
    psf_axial: float  # point-spread SD along the beam, polar samples
    psf_lateral: float  # point-spread SD across beams, beams
    dynamic_range_db: float  # log-compression window, dB
    gamma: float  # display curve exponent
    haze: float  # near-field clutter amplitude (reverberation)
    noise_db: float  # electronic noise floor relative to tissue, dB
    text_level: int  # grey level of the burned-in text, 0..255
    exam_date: str  # burned-in date, YYYYMMDD


@dataclass(frozen=True)
class Clip:
    """Per-video acquisition: what differs between two videos of one study."""

    echo_view: str  # "PLAX", "A4C" or "A2C"
    n_frames: int  # frames in the video
    start_phase: float  # cardiac phase of frame 0, fraction of a beat
    hr_bpm: float  # heart rate during this video
    angle_deg: float  # probe rotation relative to the study's mean
    shift_x_mm: float  # lateral probe translation
    shift_y_mm: float  # axial translation (heart deeper/shallower)
    scale: float  # foreshortening of the cut plane (scales LV length and diameter)
    depth_step_mm: float  # depth change from the study preset (0 for most videos)
    gain_db: float  # gain jitter added to the preset
    tgc_db: tuple[float, ...]  # TGC jitter added to the preset, dB
    haze_scale: float  # near-field clutter relative to the study's (the window shifts)
    speckle_seed: int  # seed of this video's speckle realisation
    time_s: int  # acquisition time of day, seconds (burned in)


@dataclass(frozen=True)
class Study:
    """One patient's exam: the heart, the preset and its videos."""

    index: int  # patient number in the cohort
    study_id: str
    patient_id: str
    anatomy: Anatomy
    preset: Preset
    clips: tuple[Clip, ...]


def lvh_threshold(prevalence: float) -> float:
    """Measured-thickness threshold (mm) that gives `prevalence` positives in expectation."""
    return WALL_MEAN_MM + ndtri(1 - prevalence) * WALL_SD_MM * np.hypot(1.0, LVH_NOISE_SD)


def sample_anatomy(rng: np.random.Generator, *, lvh_prevalence: float = 0.35,
                   as_prevalence: float = 0.18, as_lvh_correlation: float = 0.35,
                   hr_range: tuple[float, float] = (50.0, 110.0)) -> Anatomy:
    """Draw one heart and its two labels (noisy thresholds of the continuous parameters).

    Wall thickness and AS severity share a latent correlation (pressure overload thickens the
    walls), so AS and LVH co-occur more often than by chance.
    """
    z_as = rng.normal()
    z_wall = as_lvh_correlation * z_as + np.sqrt(1 - as_lvh_correlation**2) * rng.normal()
    wall = float(np.clip(WALL_MEAN_MM + WALL_SD_MM * z_wall, 6.0, 20.0))
    asym = rng.normal(0.04, 0.05)  # septum usually a little thicker than the posterior wall
    measured = wall + WALL_SD_MM * LVH_NOISE_SD * rng.normal()
    z_as_thr = ndtri(1 - as_prevalence) * np.hypot(1.0, AS_NOISE_SD)
    graded = z_as + AS_NOISE_SD * rng.normal()
    z_mid = ndtri(1 - as_prevalence)  # where the leaflet opening changes fastest
    edd = float(np.clip(rng.normal(48.0, 5.0) - 0.8 * (wall - WALL_MEAN_MM), 36.0, 68.0))
    return Anatomy(
        hr_bpm=float(np.clip(rng.normal(72.0, 13.0), *hr_range)),
        lv_edd_mm=edd,
        ef=float(np.clip(rng.normal(0.60, 0.07), 0.30, 0.75)),
        septum_mm=wall * (1 + asym),
        posterior_mm=wall * (1 - asym),
        wall_mm=wall,
        lv_length_mm=float(np.clip(rng.normal(84.0, 7.0) + 0.6 * (edd - 48.0), 65.0, 110.0)),
        aortic_root_mm=float(np.clip(rng.normal(31.0, 3.5), 22.0, 42.0)),
        la_mm=float(np.clip(rng.normal(36.0, 5.0) + 2.0 * max(z_as, 0.0), 25.0, 55.0)),
        rv_mm=float(np.clip(rng.normal(26.0, 4.0), 16.0, 40.0)),
        chest_mm=float(np.clip(rng.gamma(6.0, 4.0), 8.0, 50.0)),
        echogenicity=float(np.exp(rng.normal(0.0, 0.2))),
        axis_tilt_deg=float(rng.normal(6.0, 6.0)),
        annulus_x_mm=float(rng.normal(10.0, 5.0)),
        as_severity=float(z_as),
        av_opening=float(0.80 - 0.58 * expit(2.5 * (z_as - z_mid + 0.3))),
        av_calcification=float(np.clip(expit(2.0 * (z_as - z_mid + 0.6)) + rng.normal(0, 0.12),
                                       0, 1)),
        mac=float(np.clip(0.3 * expit(2.0 * (z_as - z_mid)) + rng.normal(0.1, 0.15), 0, 1)),
        texture_seed=int(rng.integers(2**31)),
        lvh=int(measured > lvh_threshold(lvh_prevalence)),
        severe_as=int(graded > z_as_thr),
    )


def sample_preset(rng: np.random.Generator, anatomy: Anatomy,
                  fps_range: tuple[int, int] = (30, 80)) -> Preset:
    """Draw a study's machine and settings: the machine fixes the look; the sonographer picks
    depth (1 cm steps), sector width and dynamic range from a few steps, gain and TGC freely."""
    machine = int(rng.choice(len(MACHINES), p=[0.3, 0.25, 0.2, 0.15, 0.1]))
    spec = MACHINES[machine]
    lo, hi = fps_range
    fps = int(np.clip(round(lo + (hi - lo) * rng.beta(1.3, 2.2)), lo, hi))
    # Sonographers set depth to fit the heart: deeper for big chests and big hearts, 1 cm steps.
    needed = anatomy.chest_mm + anatomy.rv_mm + 2 * anatomy.wall_mm + anatomy.lv_edd_mm + 45.0
    depth = float(np.clip(10.0 * np.round((needed + rng.normal(0, 12.0)) / 10.0), 110.0, 220.0))
    year, day = 2016 + int(rng.integers(5)), int(rng.integers(1, 366))
    month, mday = 1 + (day - 1) // 31 % 12, 1 + (day - 1) % 28
    return Preset(
        machine=machine,
        fps=fps,
        depth_mm=depth,
        fan_deg=spec.fan_deg - (10.0 if rng.uniform() < 0.3 else 0.0),
        fan_radius=spec.fan_radius,
        gain_db=float(rng.normal(0.0, 3.0)),
        tgc_db=tuple(float(v) for v in rng.normal(0.0, 1.5, size=5)),  # sliders mostly left alone
        attenuation_db_mm=float(rng.normal(-0.03, 0.03)),  # body habitus, imperfect TGC
        psf_axial=spec.psf_axial,
        psf_lateral=spec.psf_lateral,
        dynamic_range_db=spec.dynamic_range_db + float(rng.choice([-6.0, 0.0, 0.0, 6.0])),
        gamma=spec.gamma,
        haze=float(rng.uniform(0.0, 0.12)),  # near-field clutter depends on the patient's window
        noise_db=spec.noise_db,
        text_level=spec.text_level,
        exam_date=f"{year}{month:02d}{mday:02d}",
    )


def sample_clip(rng: np.random.Generator, anatomy: Anatomy, *, echo_view: str = "PLAX",
                frames_range: tuple[int, int] = (40, 120)) -> Clip:
    """Draw one video's acquisition jitter around the study's heart and preset."""
    return Clip(
        echo_view=echo_view,
        n_frames=int(rng.integers(frames_range[0], frames_range[1] + 1)),
        start_phase=float(rng.uniform()),
        hr_bpm=float(np.clip(anatomy.hr_bpm + rng.normal(0, 2.0), 45.0, 120.0)),
        angle_deg=float(rng.normal(0, 4.0)),
        shift_x_mm=float(rng.normal(0, 4.0)),
        shift_y_mm=float(rng.normal(0, 3.0)),
        scale=float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1)),
        depth_step_mm=float(rng.choice([-10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0])),
        gain_db=float(rng.normal(0, 2.0)),
        tgc_db=tuple(float(v) for v in rng.normal(0.0, 0.5, size=5)),
        haze_scale=float(np.exp(rng.normal(0, 0.4))),
        speckle_seed=int(rng.integers(2**31)),
        time_s=int(rng.integers(7 * 3600, 18 * 3600)),
    )


def sample_study(seed: int, index: int, *, plax_range: tuple[int, int] = (2, 5),
                 other_view_prob: float = 0.2, a2c_prob: float = 0.0,
                 frames_range: tuple[int, int] = (40, 120),
                 fps_range: tuple[int, int] = (30, 80), **anatomy_kwargs) -> Study:
    """Draw patient `index` of cohort `seed`; independent of the cohort size (prefix-stable)."""
    rng = np.random.default_rng([seed, index])
    anatomy = sample_anatomy(rng, **anatomy_kwargs)
    preset = sample_preset(rng, anatomy, fps_range)
    n_plax = int(rng.integers(plax_range[0], plax_range[1] + 1))
    views = ["PLAX"] * n_plax + (["A4C"] if rng.uniform() < other_view_prob else [])
    # drawn only when asked for, so cohorts without A2C stay what they were, stream for stream
    if a2c_prob > 0 and rng.uniform() < a2c_prob:
        views.append("A2C")
    clips = [sample_clip(rng, anatomy, echo_view=v, frames_range=frames_range) for v in views]
    for _ in range(len(views) - n_plax):  # the apical views sit anywhere in the exam's sequence
        clips.insert(int(rng.integers(len(clips))), clips.pop())
    return Study(index, f"S{index:05d}", f"P{index:05d}", anatomy, preset, tuple(clips))
