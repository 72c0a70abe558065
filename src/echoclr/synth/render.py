"""Ultrasound image formation for the synthetic cohort: beams, speckle, log compression, scan
conversion to a square frame, and burned-in text outside the fan.

Tissue is rendered in beam (polar) space, as a scanner forms it: complex scatterers that move with
the tissue and decorrelate slowly, blurred by the machine's point-spread function, envelope
detected, time-gain compensated and log-compressed, then scan-converted to the display grid.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter

from echoclr.synth.anatomy import MACHINES, Clip, Study
from echoclr.synth.heart import MYOCARDIUM, apical_scene, beat_timeline, plax_scene
from echoclr.synth.shapes import MaterialGrid, clamp01

SPECKLE_TAU_S = 0.25  # decorrelation time of tissue speckle (out-of-plane motion)
APICAL = ("A4C", "A2C")  # views cut from the apex: deeper sectors, apical heart axes
APEX_ROW = 0.02  # sector apex, fraction of the frame height from the top
OVERLAY_GAP_PX = 2.0  # burned-in text stays this far outside the fan (so fan masking removes it)
CHUNK_FRAMES = 12  # frames rendered together: arrays stay in cache


def frame_times(study: Study, clip_index: int) -> np.ndarray:
    """Acquisition time (s) of each frame of a video, end-diastole of its first beat at 0."""
    clip = study.clips[clip_index]
    return clip.start_phase * 60.0 / clip.hr_bpm + np.arange(clip.n_frames) / study.preset.fps


def fan_geometry(study: Study, clip: Clip, size: int) -> tuple[float, float, float, float]:
    """(depth_mm, half_angle_rad, apex_row_px, radius_px) of a video's sector."""
    preset = study.preset
    depth = preset.depth_mm + clip.depth_step_mm + (25.0 if clip.echo_view in APICAL else 0.0)
    apex = APEX_ROW * size
    return depth, np.radians(preset.fan_deg / 2), apex, preset.fan_radius * (size - 1 - apex)


def heart_coordinates(study: Study, clip: Clip, x: np.ndarray, y: np.ndarray):
    """Probe coordinates (mm; x lateral, y depth) -> heart coordinates (u, v) of the view."""
    an = study.anatomy
    if clip.echo_view in APICAL:
        a = np.radians(clip.angle_deg + 0.3 * an.axis_tilt_deg)
        x0, y0 = clip.shift_x_mm - 5.0, an.chest_mm + 12.0 + clip.shift_y_mm
        dx, dy = x - x0, y - y0
        return np.sin(a) * dx + np.cos(a) * dy, np.cos(a) * dx - np.sin(a) * dy
    a = np.radians(an.axis_tilt_deg + clip.angle_deg)
    mid = 0.45 * an.lv_length_mm * clip.scale  # the RV's top over mid-LV sits under the chest wall
    above = an.lv_edd_mm * clip.scale / 2 + an.septum_mm + an.rv_mm
    x0 = an.annulus_x_mm + clip.shift_x_mm
    y0 = an.chest_mm + 4.0 - mid * np.sin(a) + above * np.cos(a) + clip.shift_y_mm
    dx, dy = x - x0, y - y0
    return np.cos(a) * dx - np.sin(a) * dy, np.sin(a) * dx + np.cos(a) * dy


def heart_to_pixel(study: Study, clip_index: int, size: int, u, v) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) in the frame of heart coordinates (u, v) in mm: the inverse of the rendering's
    geometry, for measuring rendered anatomy."""
    clip = study.clips[clip_index]
    probe_u, probe_v = heart_coordinates(study, clip, np.float64(0.0), np.float64(0.0))
    du, dv = np.asarray(u) - probe_u, np.asarray(v) - probe_v  # from the probe, heart axes
    ex = heart_coordinates(study, clip, np.float64(1.0), np.float64(0.0))  # image x in heart axes
    ey = heart_coordinates(study, clip, np.float64(0.0), np.float64(1.0))
    ex, ey = (ex[0] - probe_u, ex[1] - probe_v), (ey[0] - probe_u, ey[1] - probe_v)
    x, y = du * ex[0] + dv * ex[1], du * ey[0] + dv * ey[1]  # rotation: transpose = inverse
    depth, _, apex, radius = fan_geometry(study, clip, size)
    scale = radius / depth  # px per mm
    return apex + y * scale, size / 2 + x * scale


def chest_wall(study: Study, y: np.ndarray) -> np.ndarray:
    """Reflectivity of the layered chest wall above the heart (probe coordinates, static)."""
    an = study.anatomy
    rng = np.random.default_rng(an.texture_seed + 2)
    layers = 0.2 + 0.5 * np.exp(-0.5 * (y / 1.2) ** 2)  # skin
    for depth in rng.uniform(3.0, an.chest_mm, size=3):  # fascia
        layers = layers + rng.uniform(0.2, 0.5) * np.exp(-0.5 * ((y - depth) / 0.8) ** 2)
    return layers * an.echogenicity


def beam_image(study: Study, clip_index: int, size: int, times: np.ndarray) -> np.ndarray:
    """Display brightness 0..1 in beam space, (T, R, A) float32: depth rows, beam columns.

    Scatterers are a white complex-Gaussian field on the heart's material grid, evolving as AR(1)
    from frame to frame, so speckle moves with the walls and decorrelates slowly.
    """
    clip, preset, an = study.clips[clip_index], study.preset, study.anatomy
    depth, half, _, _ = fan_geometry(study, clip, size)
    n_r, n_a = size, int(round(0.8 * size))
    r = ((np.arange(n_r, dtype=np.float32) + 0.5) / n_r * depth)[:, None]  # (R, 1) mm
    theta = np.linspace(-half, half, n_a, dtype=np.float32)[None, :]  # (1, A) rad
    x, y = r * np.sin(theta), r * np.cos(theta)
    u, v = (a.astype(np.float32) for a in heart_coordinates(study, clip, x, y))
    grid = MaterialGrid.covering(an, u, v, spacing=depth / n_r)
    beat, _ = beat_timeline(times, clip.hr_bpm)
    scene = apical_scene if clip.echo_view in APICAL else plax_scene
    near = np.clip((an.chest_mm - y) / 1.0 + 0.5, 0, 1)  # the chest wall covers the heart scene
    clutter = preset.haze * clip.haze_scale * np.exp(-y / 25.0)  # near-field reverberation
    chest = near * chest_wall(study, y) + clutter
    apodisation = 1 - 0.35 * (theta / half) ** 4  # beams weaken toward the fan edges
    knots = np.linspace(0, depth, 5)
    tgc = np.interp(r[:, 0], knots, np.add(preset.tgc_db, clip.tgc_db))[:, None]
    gain = (preset.gain_db + clip.gain_db + tgc + preset.attenuation_db_mm * r).astype(np.float32)
    noise = MYOCARDIUM * 10 ** ((preset.noise_db + 0.12 * r) / 20)  # grows with depth after TGC
    sigma = (0, preset.psf_axial, preset.psf_lateral)

    rng = np.random.default_rng(clip.speckle_seed)
    rho = np.float32(np.exp(-1.0 / (preset.fps * SPECKLE_TAU_S)))
    fresh = np.float32(np.sqrt(1 - rho**2))
    scatter = rng.standard_normal((2, grid.n_v * grid.n_u), dtype=np.float32)
    out = np.empty((len(times), n_r, n_a), np.float32)
    for start in range(0, len(times), CHUNK_FRAMES):
        chunk = slice(start, min(start + CHUNK_FRAMES, len(times)))
        amp, cells = scene(an, clip, beat.frames(chunk), u, v, grid)
        amp = (amp * (1 - near) + chest) * apodisation
        re, im = np.empty_like(amp), np.empty_like(amp)
        for t in range(amp.shape[0]):
            if start + t:
                renewal = rng.standard_normal(scatter.shape, dtype=np.float32)
                scatter = rho * scatter + fresh * renewal
            re[t], im[t] = scatter[0, cells[t]], scatter[1, cells[t]]
        re = gaussian_filter(amp * re, sigma, mode="nearest", truncate=2.5)
        im = gaussian_filter(amp * im, sigma, mode="nearest", truncate=2.5)
        re += noise * rng.standard_normal(re.shape, dtype=np.float32)
        im += noise * rng.standard_normal(im.shape, dtype=np.float32)
        power = (re * re + im * im) * (1 / MYOCARDIUM**2) + 1e-10  # tissue ~ 1
        db = np.float32(10 / np.log(10)) * np.log(power)
        out[chunk] = clamp01((db + gain) * (1 / preset.dynamic_range_db) + 0.45) ** preset.gamma
    return out


def scan_convert(beams: np.ndarray, depth: float, half: float, apex: float, radius: float,
                 size: int) -> np.ndarray:
    """Bilinear scan conversion of (T, R, A) beam data to (T, size, size) frames; 0 outside."""
    n_t, n_r, n_a = beams.shape
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = rows - apex, cols - size / 2
    r_idx = np.hypot(dx, dy) / radius * n_r - 0.5
    a_idx = (np.arctan2(dx, dy) + half) / (2 * half) * (n_a - 1)
    inside = (r_idx >= -0.5) & (r_idx <= n_r - 0.5) & (a_idx >= 0) & (a_idx <= n_a - 1) & (dy > 0)
    r_idx, a_idx = np.clip(r_idx, 0, n_r - 1.001)[inside], np.clip(a_idx, 0, n_a - 1.001)[inside]
    r0, a0 = r_idx.astype(np.int32), a_idx.astype(np.int32)
    fr, fa = (r_idx - r0)[None], (a_idx - a0)[None]
    flat = beams.reshape(n_t, -1)
    k = r0 * n_a + a0
    values = ((flat[:, k] * (1 - fa) + flat[:, k + 1] * fa) * (1 - fr)
              + (flat[:, k + n_a] * (1 - fa) + flat[:, k + n_a + 1] * fa) * fr)
    out = np.zeros((n_t, size * size), np.float32)
    out[:, inside.ravel()] = values
    return out.reshape(n_t, size, size)


def outside_fan(size: int, half: float, apex: float, radius: float, gap: float) -> np.ndarray:
    """(size, size) bool: pixels at least `gap` px outside the sector."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = rows - apex, cols - size / 2
    dist = np.hypot(dx, dy)
    angular = (np.abs(np.arctan2(dx, dy)) - half) * dist  # px beyond the straight edges
    return (dist > radius + gap) | (angular > gap) | (dy < -gap)


def overlay(study: Study, clip_index: int, size: int) -> np.ndarray:
    """Burned-in text, depth ticks and orientation mark outside the fan: (size, size) 0..1."""
    clip, preset = study.clips[clip_index], study.preset
    machine = MACHINES[preset.machine]
    depth, half, apex, radius = fan_geometry(study, clip, size)
    scale = 4
    canvas = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(8, round(0.05 * size * scale)))
    line = round(0.06 * size * scale)
    hh, mm, ss = clip.time_s // 3600, clip.time_s // 60 % 60, clip.time_s % 60
    left = [machine.name, f"SYNTH^{study.index:05d}", preset.exam_date,
            f"{hh:02d}:{mm:02d}:{ss:02d}"]
    right = [f"{preset.fps} Hz", f"G {50 + preset.gain_db + clip.gain_db:.0f}",
             f"DR {preset.dynamic_range_db:.0f}", f"{depth / 10:.0f} cm"]
    if machine.text_right:
        left, right = right, left
    for i, text in enumerate(left):
        draw.text((2, 2 + i * line), text, fill=255, font=font)
    for i, text in enumerate(right):
        draw.text((size * scale - 2, 2 + i * line), text, fill=255, font=font, anchor="ra")
    art = np.asarray(canvas, np.float32).reshape(size, scale, size, scale).mean(axis=(1, 3)) / 255
    # Depth ticks every centimetre beside the right edge of the fan, and the orientation dot.
    for cm in range(1, int(depth // 10) + 1):
        px = cm * 10.0 / depth * radius
        edge = half + np.arcsin(min(1.0, (OVERLAY_GAP_PX + 2.5) / px))
        row, col = apex + px * np.cos(edge), size / 2 + px * np.sin(edge)
        if 0 <= row < size and 0 <= col < size:
            art[int(row), int(col)] = 1.0 if cm % 5 == 0 else 0.7
    art[int(apex + 1), max(0, int(size / 2 - 0.07 * size))] = 1.0
    return art * outside_fan(size, half, apex, radius, OVERLAY_GAP_PX) * preset.text_level / 255


def ecg_strip(study: Study, clip_index: int, size: int, times: np.ndarray) -> np.ndarray:
    """(T, size, size) 0..1: the ECG trace at the frame bottom with a sweeping cursor."""
    clip = study.clips[clip_index]
    _, half, apex, radius = fan_geometry(study, clip, size)
    sweep = 2.5  # seconds across the frame width
    columns = np.arange(size)
    _, trace = beat_timeline(times[0] + (columns / size - 0.5) * sweep, clip.hr_bpm)
    base, height = size - 0.03 * size - 1, 0.06 * size
    rows = np.clip(np.rint(base - height * trace), 0, size - 1).astype(int)
    strip = np.zeros((size, size), np.float32)
    for col in columns:
        lo, hi = sorted((rows[col], rows[max(col - 1, 0)]))
        strip[lo:hi + 1, col] = 0.8
    frames = np.repeat(strip[None], len(times), axis=0)
    cursor = ((times - times[0]) / sweep + 0.5) % 1.0 * size
    band_rows = slice(int(base - 1.3 * height), int(base + 1))
    for t, col in enumerate(cursor.astype(int)):
        frames[t, band_rows, col] = 1.0
    return frames * outside_fan(size, half, apex, radius, OVERLAY_GAP_PX)


def render_video(study: Study, clip_index: int, size: int = 112, *,
                 times: np.ndarray | None = None, text: bool = True) -> np.ndarray:
    """Render one video of a study.

    Args:
        study: the sampled study.
        clip_index: which of its videos.
        size: frame height = width, pixels.
        times: frame times in s (end-diastole of the first beat at 0); default: the video's own.
        text: burn in text, depth scale and ECG outside the fan.

    Returns:
        (T, size, size) uint8 grey frames.
    """
    clip = study.clips[clip_index]
    times = frame_times(study, clip_index) if times is None else np.asarray(times, np.float64)
    depth, half, apex, radius = fan_geometry(study, clip, size)
    beams = beam_image(study, clip_index, size, times)
    frames = scan_convert(beams, depth, half, apex, radius, size)
    if text:
        burned = np.maximum(overlay(study, clip_index, size)[None],
                            ecg_strip(study, clip_index, size, times))
        frames = np.maximum(frames, burned)
    return np.rint(frames * 255).astype(np.uint8)
