"""Beating-heart geometry of the synthetic cohort: tissue reflectivity in heart coordinates.

`plax_scene` / `apical_scene` map heart coordinates (mm) and a cardiac timeline to a reflectivity
amplitude per point and frame, and each point's cell in a material (end-diastolic) grid so that
speckle and the heart's own texture move with the tissue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echoclr.synth.anatomy import Anatomy, Clip
from echoclr.synth.shapes import (
    MaterialGrid,
    band,
    clamp01,
    closed_tip_angles,
    disc,
    leaflet,
    paint,
)

BLOOD = 0.012  # blood reflectivity relative to myocardium (about -28 dB)
MYOCARDIUM = 0.30  # reference tissue reflectivity (0 dB on screen before gain)
PERICARDIUM = 1.0
VALVE = 0.42
ROOT_WALL = 0.55
BACKGROUND = 0.075  # tissue around the heart


@dataclass(frozen=True)
class Beat:
    """Cardiac timeline sampled at a video's frames; each array has shape (T, 1, 1)."""

    contraction: np.ndarray  # 0 at end-diastole .. 1 at end-systole
    aortic: np.ndarray  # aortic valve opening 0..1
    mitral: np.ndarray  # mitral valve opening 0..1 (E and A waves)
    atrial: np.ndarray  # left atrial filling 0..1 (peaks at end-systole)

    def frames(self, sl: slice) -> Beat:
        """The timeline restricted to frames `sl`."""
        return Beat(self.contraction[sl], self.aortic[sl], self.mitral[sl], self.atrial[sl])


def systole_s(hr_bpm: float) -> float:
    """Duration (s) from end-diastole (R wave) to end-systole; nearly fixed whatever the rate."""
    return 0.40 - 0.0013 * hr_bpm


def beat_timeline(t_s: np.ndarray, hr_bpm: float) -> tuple[Beat, np.ndarray]:
    """Sample a heart cycle with realistic timing at times `t_s` (s, end-diastole at 0).

    Returns:
        The `Beat` and the ECG trace (T,) in arbitrary units (R wave = 1 at end-diastole).
    """
    period = 60.0 / hr_bpm
    tau = np.mod(t_s, period)
    ts = systole_s(hr_bpm)
    fill = ts + 0.06 + 0.12  # isovolumic relaxation, then rapid filling
    atrial = max(period - 0.13, fill + 0.02)

    def curve(times, values):
        times = np.maximum.accumulate(np.asarray(times, float)) + 1e-4 * np.arange(len(times))
        return np.interp(tau, times, values).astype(np.float32)[:, None, None]

    beat = Beat(
        contraction=curve([0, 0.04, 0.45 * ts, ts, ts + 0.06, fill, atrial, period - 0.02,
                           period + 0.01],
                          [0, 0.03, 0.6, 1.0, 0.97, 0.25, 0.12, 0, 0]),
        aortic=curve([0, 0.04, 0.07, ts - 0.05, ts, period + 0.01], [0, 0, 1, 0.85, 0, 0]),
        mitral=curve([0, ts + 0.06, ts + 0.10, (fill + atrial) / 2, atrial, atrial + 0.04,
                      period - 0.01, period + 0.01], [0, 0, 1, 0.35, 0.3, 0.75, 0, 0]),
        atrial=curve([0, ts, fill, period + 0.01], [0.2, 1.0, 0.3, 0.2]),
    )
    since_r = (tau + period / 2) % period - period / 2
    ecg = (np.exp(-0.5 * (since_r / 0.012) ** 2)
           - 0.15 * np.exp(-0.5 * ((since_r + 0.02) / 0.008) ** 2)
           - 0.25 * np.exp(-0.5 * ((since_r - 0.025) / 0.01) ** 2)
           + 0.3 * np.exp(-0.5 * ((tau - (ts - 0.06)) / 0.05) ** 2)
           + 0.15 * np.exp(-0.5 * ((tau - (period - 0.12)) / 0.03) ** 2))
    return beat, ecg


def plax_scene(an: Anatomy, clip: Clip, beat: Beat, u: np.ndarray, v: np.ndarray,
               grid: MaterialGrid):
    """Reflectivity of a parasternal long-axis cut.

    Heart coordinates: origin at the mitral annulus on the LV long axis, u toward the base
    (aorta, left atrium; the apex is at u = -L), v toward depth.

    Args:
        an, clip: the study's heart and this video's jitter.
        beat: cardiac timeline of T frames.
        u, v: (R, A) heart coordinates of the beam samples, mm.
        grid: the material grid (texture, speckle cells).

    Returns:
        amplitude (T, R, A) float32 and material grid cells (T, R, A) int32.
    """
    c = beat.contraction
    s = clip.scale
    big_l, d = an.lv_length_mm * s, an.lv_edd_mm * s
    fs = 1 - (1 - an.ef) ** (1 / 3)  # fractional shortening from EF (cube law)
    thick = 1 + 1.3 * fs * c  # systolic wall thickening
    ts_0, tp_0 = an.septum_mm, an.posterior_mm
    ts_t, tp_t = ts_0 * thick, tp_0 * thick
    root = an.aortic_root_mm
    # The base descends toward the fixed apex and the root moves anteriorly in systole.
    w = (np.clip((u + big_l) / big_l, 0, 1) * np.clip(1 - (np.abs(v) - d / 2 - 25) / 15, 0, 1))
    ub = u + (13.0 * an.ef / 0.6) * c * w
    vb = v + 6.0 * c * w
    rng = np.random.default_rng(an.texture_seed + 1)
    wavelength, phase = rng.uniform(15, 35), rng.uniform(0, 6.3)
    ripple = rng.uniform(0.2, 0.8) * np.cos(ub * (2 * np.pi / wavelength) + phase)
    ripple += rng.uniform(0.0, 3.0) * np.exp(-0.5 * ((ub + 18.0) / 8.0) ** 2)  # basal septal bulge

    x = clamp01(np.abs(ub + 0.45 * big_l) * (1 / (0.55 * big_l)))
    prof = np.sqrt(1 - (x * x) ** 2)  # LV cavity half-height profile: 1 mid-cavity, 0 at the apex
    prof0 = float(np.sqrt(1 - (0.45 / 0.55) ** 4))
    taper = clamp01(ub * (-1 / 25.0))  # the basal septum hardly moves inward
    lvot = (0.25 * root) * clamp01((ub + 20.0) * (1 / 20.0)) ** 2
    in_lv = (ub < 0).astype(np.float32)
    v_ant_root = -(d / 2 * prof0 + 0.25 * root) - np.float32(np.tan(np.radians(12))) * ub
    root_part = (1 - in_lv) * v_ant_root

    def anterior_edge(shrink):
        inward = (d * fs / 2) * shrink * taper * prof
        return in_lv * (inward - (d / 2) * prof - lvot + ripple) + root_part

    e_ant_t, e_ant_0 = anterior_edge(c), anterior_edge(0.0)
    e_post_t = (d / 2) * (1 - fs * c) * prof - ripple
    e_post_0 = (d / 2) * prof - ripple
    base = clamp01(ub * (-1 / 12.0))  # 1 in the LV, 0 at the root: the septum tapers into it
    th_ant_t = 2.5 + (ts_t - 2.5) * base
    v_post_root = v_ant_root + root * (1 + 0.12 * np.exp(-0.5 * ((ub - 12.0) / 8.0) ** 2))

    # Material position: undo the base motion, then the walls' inward motion (decaying outward).
    upper = (vb < (e_ant_t + e_post_t) / 2).astype(np.float32)
    beyond_ant = clamp01(1 - (e_ant_t - vb) * (1 / 25.0))
    beyond_post = clamp01(1 - (vb - e_post_t) * (1 / 25.0))
    shift = (upper * (e_ant_0 - e_ant_t) * beyond_ant
             + (1 - upper) * (e_post_0 - e_post_t) * beyond_post)
    cells = grid.index(ub, vb + shift)
    myo = (MYOCARDIUM * an.echogenicity) * grid.myocardium[cells]
    amp = (BACKGROUND * an.echogenicity) * grid.background[cells]

    rv_t = an.rv_mm * (1 - 0.15 * c) * (1 - 0.15 * (1 - in_lv))
    rv_bottom = e_ant_t - th_ant_t
    paint(amp, band(vb, rv_bottom - rv_t, rv_bottom) * band(ub, -0.9 * big_l, 30.0, 6.0), BLOOD)
    paint(amp, band(vb, rv_bottom, e_ant_t), myo * base + ROOT_WALL * (1 - base))
    paint(amp, band(vb, e_ant_t, e_post_t) * band(ub, -big_l, 0.5), BLOOD)  # LV cavity
    paint(amp, band(vb, v_ant_root, v_post_root) * band(ub, -1.0, 90.0), BLOOD)  # aortic lumen
    paint(amp, band(vb, v_post_root, v_post_root + 2.5) * band(ub, 0.0, 90.0), ROOT_WALL)
    paint(amp, band(vb, e_post_t, e_post_t + tp_t) * band(ub, -big_l - 20, 1.0, 2.0), myo)
    paint(amp, band(vb, e_post_t + tp_t, e_post_t + tp_t + 2.5) * band(ub, -big_l - 20, 4.0, 3.0),
          PERICARDIUM * an.echogenicity)
    papillary = disc(ub, vb, -0.45 * big_l, e_post_t - 4.0, 7.0, 3.5)
    paint(amp, 0.6 * papillary, 0.12)
    # Left atrium behind the root, with a bright posterior rim; descending aorta below it.
    la_v = an.la_mm * s * (1 + 0.12 * beat.atrial)
    la_cu, la_cv = 0.5 * an.la_mm + 4.0, v_post_root + 2.5 + la_v / 2
    la_rim = disc(ub, vb, la_cu, la_cv + 1.5, 0.6 * an.la_mm + 1.5, la_v / 2 + 2.5)
    paint(amp, la_rim, 0.7 * an.echogenicity)
    paint(amp, disc(ub, vb, la_cu, la_cv, 0.6 * an.la_mm, la_v / 2), BLOOD)
    da_u, da_v = 0.1 * an.la_mm, -(d / 2 * prof0 + 0.25 * root) + root + an.la_mm * s + 6.0
    paint(amp, disc(ub, vb, da_u, da_v, 10.0, 10.0), 0.5)
    paint(amp, disc(ub, vb, da_u, da_v, 7.5, 7.5), BLOOD)
    plax_valves(amp, an, beat, ub, vb, d, fs, root, prof0)
    return amp, cells


def plax_valves(amp, an: Anatomy, beat: Beat, ub, vb, d: float, fs: float, root: float,
                prof0: float) -> None:
    """Paint the aortic and mitral leaflets (and annular calcium) of a PLAX cut in place."""
    # Only points within 45 mm of the annulus can hold a leaflet: compute there.
    near = np.flatnonzero(((ub[0] - 10.0) ** 2 + vb[0] ** 2 < 45.0**2).ravel())
    n_t = amp.shape[0]
    flat_amp = amp.reshape(n_t, -1)
    patch = flat_amp[:, near]
    pu, pv = ub.reshape(ub.shape[0], -1)[:, near], vb.reshape(vb.shape[0], -1)[:, near]
    pu, pv = np.broadcast_to(pu, patch.shape), np.broadcast_to(pv, patch.shape)
    squeeze = [a[:, :, 0] for a in (beat.contraction, beat.aortic, beat.mitral)]
    c, aortic, mitral = squeeze
    # Aortic valve: two leaflets hinged on the root walls, opening to `av_opening` in systole.
    u_av, slope = 5.0, np.radians(-12.0)
    hinge_v = -(d / 2 * prof0 + 0.25 * root) - np.tan(np.radians(12)) * u_av
    length = 0.55 * root
    half_gap = root / 2 * (1 - an.av_opening * aortic)
    opening = np.arctan2(half_gap, np.sqrt(np.maximum(length**2 - half_gap**2, 0.0)))
    calc = an.av_calcification
    width, value = 1.2 + 2.2 * calc, VALVE + 1.3 * calc
    leaflet(patch, pu, pv, (u_av, hinge_v), slope + opening, length, width, value)
    leaflet(patch, pu, pv, (u_av, hinge_v + root), slope - opening, length, width, value)
    # Mitral valve: tips meet in systole; open toward the apex in early (E) and late (A) diastole.
    ant_hinge = (0.0, hinge_v + root + 2.5)
    post_hinge = (-1.0 + 0 * c, d / 2 * (1 - fs * c) * prof0)
    ant_len, post_len = 0.36 * d, 0.22 * d
    ant_closed, post_closed = closed_tip_angles(ant_hinge, post_hinge, ant_len, post_len, -1.0)
    leaflet(patch, pu, pv, ant_hinge, ant_closed + mitral * (np.radians(-120) - ant_closed),
            ant_len, 1.4, VALVE)
    leaflet(patch, pu, pv, post_hinge, post_closed + mitral * (np.radians(115) - post_closed),
            post_len, 1.4, VALVE)
    mac_r = 1.0 + 3.0 * an.mac
    dist = np.sqrt((pu - post_hinge[0]) ** 2 + (pv - post_hinge[1] - 1.5) ** 2)
    paint(patch, clamp01(mac_r - dist) * an.mac, 1.4)
    flat_amp[:, near] = patch


def apical_scene(an: Anatomy, clip: Clip, beat: Beat, u: np.ndarray, v: np.ndarray,
                 grid: MaterialGrid):
    """Reflectivity of an apical cut: four-chamber (A4C) or, for ``clip.echo_view == "A2C"``,
    two-chamber (LV and LA only, between the inferior and anterior walls).

    Heart coordinates: origin at the LV apex (endocardium), u along the septum toward the atria,
    v across (LV to +v, RV to -v). Same arguments and returns as `plax_scene`.
    """
    two_chamber = clip.echo_view == "A2C"
    c = beat.contraction
    s = clip.scale
    big_l, d = an.lv_length_mm * s, an.lv_edd_mm * s
    fs = 1 - (1 - an.ef) ** (1 / 3)
    ts, tp = an.septum_mm * (1 + 1.3 * fs * c), an.posterior_mm * (1 + 1.3 * fs * c)
    ub = u + (13.0 * an.ef / 0.6) * c * np.clip(u / big_l, 0, 1)  # annulus moves toward the apex
    vb = np.broadcast_to(v, ub.shape)
    cells = grid.index(ub, vb)
    myo = (MYOCARDIUM * an.echogenicity) * grid.myocardium[cells]
    amp = (BACKGROUND * an.echogenicity) * grid.background[cells]
    prof = np.sqrt(clamp01(1 - (1 - clamp01(ub * (1 / (0.55 * big_l)))) ** 2))
    width = d * (1 - fs * c) * prof
    rv_prof = np.sqrt(clamp01((ub - 0.25 * big_l) * (1 / (0.5 * big_l))))
    rv_w = (0.0 if two_chamber else 0.85 * an.rv_mm) * (1 - 0.15 * c) * rv_prof
    lv_outer = d * prof + tp
    right, left = ts / 2 + lv_outer, -ts / 2 - rv_w - 3.0
    pericardium = band(vb, left, right + 2.5) * band(ub, -tp - 2.5, big_l + 5)
    paint(amp, pericardium, PERICARDIUM * an.echogenicity)
    paint(amp, band(vb, left, right) * band(ub, -tp, big_l + 5), myo)
    paint(amp, band(vb, ts / 2, ts / 2 + width) * band(ub, 0.0, big_l + 2), BLOOD)
    la, ra = an.la_mm * s * (1 + 0.12 * beat.atrial), 0.9 * an.la_mm * s
    paint(amp, disc(ub, vb, big_l + 0.55 * la, ts / 2 + d / 2, 0.55 * la, 0.45 * d), BLOOD)
    if not two_chamber:
        paint(amp, band(vb, -ts / 2 - rv_w, -ts / 2) * band(ub, 0.25 * big_l, big_l + 2), BLOOD)
        ra_v = -ts / 2 - an.rv_mm / 2
        paint(amp, disc(ub, vb, big_l + 0.5 * ra, ra_v, 0.5 * ra, 0.5 * an.rv_mm), BLOOD)
    mitral = beat.mitral
    # Mitral (septal, lateral) and tricuspid (septal, anterior) leaflets at the annulus plane;
    # direction +1 swings toward +v when closed; angle 0 points to the atria, pi to the apex.
    rv = an.rv_mm
    valves = ((ts / 2 + 1.0, 1.0, 0.45 * d), (ts / 2 + d - 1.0, -1.0, 0.3 * d),
              (-ts / 2 - 1.0, -1.0, 0.3 * rv), (-ts / 2 - rv + 1.0, 1.0, 0.25 * rv))
    for hinge_v, direction, length in valves[:2] if two_chamber else valves:
        angle = direction * np.radians(100.0 + 70.0 * mitral)
        leaflet(amp, ub, vb, (big_l, hinge_v), angle, length, 1.4, VALVE)
    return amp, cells
