"""Beating-heart geometry of the synthetic cohort: tissue reflectivity in heart coordinates.

`plax_scene` / `a4c_scene` map heart coordinates (mm) and a cardiac timeline to a reflectivity
amplitude per point and frame, plus each point's material (end-diastolic) position so that speckle
can move with the tissue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echoclr.data.synth_anatomy import Anatomy, Clip

EDGE_MM = 0.8  # width of the soft tissue boundaries
BLOOD = 0.012  # blood reflectivity relative to myocardium ~0.3 (about -28 dB)
MYOCARDIUM = 0.30
PERICARDIUM = 1.1


@dataclass(frozen=True)
class Beat:
    """Cardiac timeline sampled at the video's frames; each array has shape (T, 1, 1)."""

    contraction: np.ndarray  # 0 at end-diastole .. 1 at end-systole
    aortic: np.ndarray  # aortic valve opening 0..1
    mitral: np.ndarray  # mitral valve opening 0..1 (E and A waves)
    atrial: np.ndarray  # left atrial filling 0..1 (peaks at end-systole)


def beat_timeline(t_s: np.ndarray, hr_bpm: float) -> tuple[Beat, np.ndarray]:
    """Sample a heart cycle with realistic timing at times `t_s` (s, end-diastole at 0).

    Systole lasts ~0.26-0.33 s whatever the heart rate; diastole absorbs the rest.

    Returns:
        The `Beat` and the ECG trace (T,) in arbitrary units (R wave = 1 at end-diastole).
    """
    period = 60.0 / hr_bpm
    tau = np.mod(t_s, period)
    ts = 0.40 - 0.0013 * hr_bpm  # end of ejection
    fill = ts + 0.06 + 0.12  # isovolumic relaxation then rapid filling
    atrial = max(period - 0.13, fill + 0.02)

    def curve(times, values):
        times = np.maximum.accumulate(np.asarray(times)) + 1e-4 * np.arange(len(times))
        return np.interp(tau, times, values).astype(np.float32)[:, None, None]

    contraction = curve([0, 0.04, 0.45 * ts, ts, ts + 0.06, fill, atrial, period - 0.02, period + 0.01],
                        [0, 0.03, 0.6, 1.0, 0.97, 0.25, 0.12, 0, 0])
    aortic = curve([0, 0.04, 0.07, ts - 0.05, ts, period + 0.01], [0, 0, 1, 0.85, 0, 0])
    mitral = curve([0, ts + 0.06, ts + 0.10, (fill + atrial) / 2, atrial, atrial + 0.04,
                    period - 0.01, period + 0.01], [0, 0, 1, 0.35, 0.3, 0.75, 0, 0])
    la = curve([0, ts, fill, period + 0.01], [0.2, 1.0, 0.3, 0.2])
    wrapped = (tau + period / 2) % period - period / 2  # time since the last R wave, centred
    ecg = (np.exp(-0.5 * (wrapped / 0.012) ** 2) - 0.15 * np.exp(-0.5 * ((wrapped + 0.02) / 0.008) ** 2)
           - 0.25 * np.exp(-0.5 * ((wrapped - 0.025) / 0.01) ** 2)
           + 0.3 * np.exp(-0.5 * ((tau - (ts - 0.06)) / 0.05) ** 2)
           + 0.15 * np.exp(-0.5 * ((tau - (period - 0.12)) / 0.03) ** 2))
    return Beat(contraction, aortic, mitral, la), ecg


def band(x, lo, hi, edge: float = EDGE_MM):
    """Soft indicator of lo <= x <= hi."""
    return np.clip((x - lo) / edge + 0.5, 0, 1) * np.clip((hi - x) / edge + 0.5, 0, 1)


def paint(amp: np.ndarray, mask, value) -> None:
    """Composite `value` over `amp` (in place) with soft coverage `mask`."""
    amp += mask * (value - amp)


def segment_distance(u, v, start, end):
    """Distance (mm) from points (u, v) to the segments start->end ((T,1,1) endpoint pairs)."""
    pu, pv = u - start[0], v - start[1]
    du, dv = end[0] - start[0], end[1] - start[1]
    h = np.clip((pu * du + pv * dv) / (du * du + dv * dv + 1e-6), 0, 1)
    return np.hypot(pu - h * du, pv - h * dv)


def leaflet(amp, u, v, hinge, angle, length, width, value) -> None:
    """Paint a valve leaflet: a segment from `hinge` at `angle` (rad, in the u-v plane)."""
    tip = (hinge[0] + length * np.cos(angle), hinge[1] + length * np.sin(angle))
    paint(amp, np.clip((width / 2 - segment_distance(u, v, hinge, tip)) / EDGE_MM + 0.5, 0, 1),
          value)


def texture(anatomy: Anatomy, u, v, modes: int = 6):
    """The heart's own smooth myocardial texture (shared by all its videos), about N(0, 1)."""
    rng = np.random.default_rng(anatomy.texture_seed)
    out = 0.0
    for _ in range(modes):
        k = 2 * np.pi / rng.uniform(6.0, 25.0)
        a = rng.uniform(0, 2 * np.pi)
        out = out + np.cos(k * (np.cos(a) * u + np.sin(a) * v) + rng.uniform(0, 2 * np.pi))
    return np.float32(np.sqrt(2.0 / modes)) * out


def wall_offsets(v, inner_t, outer_t, inner_0, outer_0, sign: float):
    """Shift (mm) that maps a point of a thickening wall back to its end-diastolic position.

    Inside the wall the shift interpolates between the inner and outer edge displacements; beyond
    the outer edge it decays over 15 mm; in the cavity it equals the inner edge displacement.
    `sign` is -1 for a wall above the cavity (outer edge shallower) and +1 below.
    """
    depth_in_wall = np.clip((v - inner_t) * sign / np.maximum((outer_t - inner_t) * sign, 0.5), 0, None)
    f = np.clip(depth_in_wall, 0, 1)
    shift = (inner_0 - inner_t) * (1 - f) + (outer_0 - outer_t) * f
    beyond = np.clip(depth_in_wall - 1, 0, None) * np.abs(outer_t - inner_t)
    return shift * np.exp(-beyond / 15.0)


def plax_scene(an: Anatomy, clip: Clip, beat: Beat, u: np.ndarray, v: np.ndarray):
    """Reflectivity of a parasternal long-axis cut.

    Heart coordinates: origin at the mitral annulus on the LV long axis, u toward the base
    (aorta, left atrium; the apex is at u = -L), v toward depth.

    Args:
        an, clip: the study's heart and this video's jitter.
        beat: cardiac timeline (T frames).
        u, v: (R, A) heart coordinates of the beam samples, mm.

    Returns:
        amplitude (T, R, A) float32 and material coordinates (u0, v0), each (T, R, A).
    """
    c = beat.contraction
    s = clip.scale
    big_l, d = an.lv_length_mm * s, an.lv_edd_mm * s
    fs = 1 - (1 - an.ef) ** (1 / 3)  # fractional shortening from EF (cube law)
    thick = 1 + 1.3 * fs * c  # wall thickening, fraction
    ts_0, tp_0 = an.septum_mm, an.posterior_mm
    ts_t, tp_t = ts_0 * thick, tp_0 * thick
    root = an.aortic_root_mm
    # The base descends toward the fixed apex and the root moves anteriorly in systole.
    w = np.clip((u + big_l) / big_l, 0, 1) * np.clip(1 - (np.abs(v) - d / 2 - 25.0) / 15.0, 0, 1)
    ub = u + (13.0 * an.ef / 0.6) * c * w
    vb = v + 6.0 * c * w
    rng = np.random.default_rng(an.texture_seed + 1)
    ripple = rng.uniform(0.2, 0.8) * np.cos(2 * np.pi * ub / rng.uniform(15, 35) + rng.uniform(0, 6.3))
    bulge = rng.uniform(0.0, 3.0) * np.exp(-0.5 * ((ub + 18.0) / 8.0) ** 2)  # basal septal bulge

    x = np.clip(np.abs(ub + 0.45 * big_l) / (0.55 * big_l), 0, 1)
    prof = (1 - x**3) ** (1 / 3)  # LV cavity half-height profile, 1 mid-cavity, 0 at the apex
    prof0 = (1 - (0.45 / 0.55) ** 3) ** (1 / 3)
    taper = np.clip(-ub / 25.0, 0, 1)  # the basal septum moves little
    lvot = 0.25 * root * np.clip((ub + 20.0) / 20.0, 0, 1) ** 2
    v_ant_root = -(d / 2 * prof0 + 0.25 * root) - np.tan(np.radians(12)) * ub  # aortic anterior wall

    def anterior_edge(shrink):
        h = (d / 2 - d * fs * shrink / 2 * taper) * prof
        return np.where(ub < 0, -h - lvot + ripple + bulge, v_ant_root)

    def posterior_edge(shrink):
        return d / 2 * (1 - fs * shrink) * prof - ripple

    base = np.clip(-ub / 12.0, 0, 1)  # 1 in the LV, 0 at the root: septum tapers into the root wall
    e_ant_t, e_ant_0 = anterior_edge(c), anterior_edge(0.0)
    th_ant_t, th_ant_0 = 2.5 + (ts_t + bulge - 2.5) * base, 2.5 + (ts_0 + bulge - 2.5) * base
    e_post_t, e_post_0 = posterior_edge(c), posterior_edge(0.0)
    v_post_root = v_ant_root + root * (1 + 0.12 * np.exp(-0.5 * ((ub - 12.0) / 8.0) ** 2))

    # Material coordinates: undo the base motion, then the walls' inward motion and thickening.
    upper = vb < (e_ant_t + e_post_t) / 2
    shift = np.where(upper,
                     wall_offsets(vb, e_ant_t, e_ant_t - th_ant_t, e_ant_0, e_ant_0 - th_ant_0, -1.0),
                     wall_offsets(vb, e_post_t, e_post_t + tp_t, e_post_0, e_post_0 + tp_0, 1.0))
    v0 = vb + shift * np.clip(1 - ub / 10.0, 0, 1)
    u0 = ub + np.zeros_like(v0)

    myo = MYOCARDIUM * an.echogenicity * np.clip(1 + 0.3 * texture(an, u0, v0), 0.3, None)
    amp = np.full(u0.shape, 0.14, np.float32) * an.echogenicity * np.clip(1 + 0.4 * texture(an, v0, u0, 3), 0.2, None)
    rv_t = an.rv_mm * (1 - 0.15 * c) * np.where(ub < 0, 1.0, 0.85)
    rv_bottom = e_ant_t - th_ant_t
    paint(amp, band(vb, rv_bottom - rv_t, rv_bottom) * band(ub, -0.9 * big_l, 30.0, 6.0), BLOOD)
    wall_value = myo * base + 0.55 * (1 - base)
    paint(amp, band(vb, rv_bottom, e_ant_t) * band(ub, -big_l - 20, 80), wall_value)
    paint(amp, band(vb, e_ant_t, e_post_t) * band(ub, -big_l, 0.5), BLOOD)  # LV cavity
    paint(amp, band(vb, v_ant_root, v_post_root) * band(ub, -1.0, 80.0), BLOOD)  # aortic lumen
    paint(amp, band(vb, v_post_root, v_post_root + 2.5) * band(ub, 0.0, 80.0), 0.55)
    paint(amp, band(vb, e_post_t, e_post_t + tp_t) * band(ub, -big_l - 20, 1.0, 2.0), myo)
    paint(amp, band(vb, e_post_t + tp_t, e_post_t + tp_t + 2.5) * band(ub, -big_l - 20, 4.0, 3.0),
          PERICARDIUM * an.echogenicity)
    papillary = ((ub + 0.45 * big_l) / 7.0) ** 2 + ((vb - e_post_t + 4.0) / 4.0) ** 2 < 1
    paint(amp, papillary * 0.6, 0.14)
    # Left atrium behind the root, with a bright posterior rim; descending aorta below it.
    la_v = an.la_mm * (1 + 0.12 * beat.atrial) * s
    la_cu, la_cv = 0.55 * an.la_mm + 2.0, v_post_root + 2.5 + la_v / 2
    la_r = ((ub - la_cu) / (0.8 * an.la_mm)) ** 2 + ((vb - la_cv) / (la_v / 2)) ** 2
    paint(amp, np.clip((1.25 - la_r) * 6, 0, 1) * (vb > la_cv), 0.8 * an.echogenicity)
    paint(amp, np.clip((1 - la_r) * 6, 0, 1), BLOOD)
    da_v = d / 2 + tp_0 + 14.0
    paint(amp, np.clip((11.0 - np.hypot(ub - 0.3 * an.la_mm, vb - da_v)) / EDGE_MM, 0, 1), 0.5)
    paint(amp, np.clip((8.0 - np.hypot(ub - 0.3 * an.la_mm, vb - da_v)) / EDGE_MM, 0, 1), BLOOD)

    # Aortic valve: two leaflets hinged on the root walls, opening to `av_opening` in systole.
    u_av, slope = 5.0, np.radians(-12.0)
    hinge_v = -(d / 2 * prof0 + 0.25 * root) - np.tan(np.radians(12)) * u_av
    length, half_gap = 0.55 * root, root / 2 * (1 - an.av_opening * beat.aortic)
    along = np.sqrt(np.maximum(length**2 - half_gap**2, 0.0))
    opening = np.arctan2(half_gap, along)
    calc = an.av_calcification
    width, value = 1.0 + 2.2 * calc, 0.45 + 1.4 * calc
    leaflet(amp, ub, vb, (u_av, hinge_v), slope + opening, length, width, value)
    leaflet(amp, ub, vb, (u_av, hinge_v + root), slope - opening, length, width, value)
    # Mitral valve: closed in systole; open in early (E) and late (A) diastole toward the apex.
    mv = beat.mitral
    ant_hinge = (0.0, hinge_v + root + 2.5)
    post_hinge = (-1.0, d / 2 * (1 - fs * c) * prof0)
    coapt_v = 0.4 * ant_hinge[1] + 0.6 * post_hinge[1]
    ant_closed = np.arctan2(coapt_v - ant_hinge[1], -7.0)
    post_closed = np.arctan2(coapt_v - post_hinge[1], -7.0 + 1.0)
    leaflet(amp, ub, vb, ant_hinge, ant_closed + mv * (np.radians(-115) - ant_closed), 0.5 * d, 1.6, 0.5)
    leaflet(amp, ub, vb, post_hinge, post_closed + mv * (np.radians(110) - post_closed), 0.3 * d,
            1.6, 0.5)
    mac_r = 1.5 + 3.0 * an.mac
    paint(amp, np.clip((mac_r - np.hypot(ub - post_hinge[0], vb - post_hinge[1] - 1.5)), 0, 1)
          * an.mac, 1.4)
    return amp.astype(np.float32), (u0.astype(np.float32), v0.astype(np.float32))


def a4c_scene(an: Anatomy, clip: Clip, beat: Beat, u: np.ndarray, v: np.ndarray):
    """Reflectivity of an apical four-chamber cut (the cohort's non-PLAX view).

    Heart coordinates: origin at the LV apex (endocardium), u along the septum toward the atria,
    v across (LV to +v, RV to -v). Same returns as `plax_scene`.
    """
    c = beat.contraction
    s = clip.scale
    big_l, d = an.lv_length_mm * s, an.lv_edd_mm * s
    fs = 1 - (1 - an.ef) ** (1 / 3)
    ts, tp = an.septum_mm * (1 + 1.3 * fs * c), an.posterior_mm * (1 + 1.3 * fs * c)
    ub = u + (13.0 * an.ef / 0.6) * c * np.clip(u / big_l, 0, 1)  # annulus moves toward apex
    vb = v
    u0, v0 = ub, np.broadcast_to(vb, ub.shape)
    prof = np.sqrt(np.clip(1 - (1 - np.clip(ub / (0.55 * big_l), 0, 1)) ** 2, 0, 1))
    width = d * (1 - fs * c) * prof
    rv_w = 0.85 * an.rv_mm * (1 - 0.15 * c) * np.sqrt(np.clip((ub - 0.25 * big_l) / (0.5 * big_l), 0, 1))
    myo = MYOCARDIUM * an.echogenicity * np.clip(1 + 0.3 * texture(an, u0, v0), 0.3, None)
    amp = np.full(u0.shape, 0.14, np.float32) * an.echogenicity
    lv_outer = d * prof + tp
    paint(amp, band(vb, -ts / 2 - rv_w - 3.0, ts / 2 + lv_outer + 2.5) * band(ub, -tp - 2.5, big_l + 5),
          PERICARDIUM * an.echogenicity)
    paint(amp, band(vb, -ts / 2 - rv_w - 3.0, ts / 2 + lv_outer) * band(ub, -tp, big_l + 5), myo)
    paint(amp, band(vb, ts / 2, ts / 2 + width) * band(ub, 0.0, big_l + 2), BLOOD)
    paint(amp, band(vb, -ts / 2 - rv_w, -ts / 2) * band(ub, 0.25 * big_l, big_l + 2), BLOOD)
    la, ra = an.la_mm * (1 + 0.12 * beat.atrial) * s, 0.9 * an.la_mm * s
    paint(amp, np.clip((1 - ((ub - big_l - 0.55 * la) / (0.55 * la)) ** 2
                        - ((vb - ts / 2 - d / 2) / (0.45 * d)) ** 2) * 6, 0, 1), BLOOD)
    paint(amp, np.clip((1 - ((ub - big_l - 0.5 * ra) / (0.5 * ra)) ** 2
                        - ((vb + ts / 2 + an.rv_mm / 2) / (0.5 * an.rv_mm)) ** 2) * 6, 0, 1), BLOOD)
    mv = beat.mitral
    # Mitral (septal, lateral) and tricuspid (septal, anterior) leaflets at the annulus plane;
    # direction +1 swings toward +v when closed. Angle 0 points to the atria, pi to the apex.
    for hinge_v, direction, length in ((ts / 2 + 1.0, 1.0, 0.45 * d), (ts / 2 + d - 1.0, -1.0, 0.3 * d),
                                       (-ts / 2 - 1.0, -1.0, 0.3 * an.rv_mm),
                                       (-ts / 2 - an.rv_mm + 1.0, 1.0, 0.25 * an.rv_mm)):
        angle = direction * np.radians(100.0 + 70.0 * mv)
        leaflet(amp, ub, vb, (big_l, hinge_v), angle, length, 1.6, 0.5)
    return amp.astype(np.float32), (u0.astype(np.float32), v0.astype(np.float32))
