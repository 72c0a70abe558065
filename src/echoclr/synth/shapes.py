"""Drawing primitives of the synthetic cohort: soft shapes painted into reflectivity maps, and the
material grid that carries a heart's texture and speckle. Written for speed (float32, in place,
no np.where): every call works on (T, R, A) arrays of a few hundred thousand points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echoclr.synth.anatomy import Anatomy

EDGE_MM = 0.8  # width of the soft tissue boundaries


def texture(seed: int, u, v, modes: int = 6):
    """A smooth random field of about N(0, 1) with 6-25 mm wavelengths, fixed by `seed`."""
    rng = np.random.default_rng(seed)
    out = np.zeros(np.broadcast_shapes(np.shape(u), np.shape(v)), np.float32)
    for _ in range(modes):
        k = 2 * np.pi / rng.uniform(6.0, 25.0)
        a = rng.uniform(0, 2 * np.pi)
        out += np.cos(k * (np.cos(a) * u + np.sin(a) * v) + rng.uniform(0, 2 * np.pi))
    return out * np.float32(np.sqrt(2.0 / modes))


@dataclass(frozen=True)
class MaterialGrid:
    """A square grid over the heart's end-diastolic coordinates (mm) carrying its texture."""

    lo_u: float
    lo_v: float
    n_u: int
    n_v: int
    spacing: float  # mm
    myocardium: np.ndarray  # (n_v * n_u,) brightness factor of the myocardium
    background: np.ndarray  # (n_v * n_u,) brightness factor of the surrounding tissue

    @classmethod
    def covering(cls, anatomy: Anatomy, u: np.ndarray, v: np.ndarray, spacing: float,
                 margin: float = 25.0) -> MaterialGrid:
        """Grid over the extent of (u, v) plus `margin` mm for the heart's motion."""
        lo_u, lo_v = float(u.min()) - margin, float(v.min()) - margin
        n_u = int((float(u.max()) + margin - lo_u) / spacing) + 1
        n_v = int((float(v.max()) + margin - lo_v) / spacing) + 1
        gu = lo_u + spacing * np.arange(n_u, dtype=np.float32)[None, :]
        gv = lo_v + spacing * np.arange(n_v, dtype=np.float32)[:, None]
        myo = np.maximum(1 + 0.3 * texture(anatomy.texture_seed, gu, gv), 0.3)
        bg = np.maximum(1 + 0.3 * texture(anatomy.texture_seed + 3, gu, gv, 8), 0.2)
        return cls(lo_u, lo_v, n_u, n_v, spacing, myo.ravel(), bg.ravel())

    def index(self, u0: np.ndarray, v0: np.ndarray) -> np.ndarray:
        """Flat grid cell (int32) of material points; out-of-grid points are clamped."""
        scale = 1 / self.spacing
        iu = np.clip(np.rint((u0 - self.lo_u) * scale), 0, self.n_u - 1).astype(np.int32)
        iv = np.clip(np.rint((v0 - self.lo_v) * scale), 0, self.n_v - 1).astype(np.int32)
        return iv * self.n_u + iu


def clamp01(x: np.ndarray) -> np.ndarray:
    """Clamp a freshly computed array to [0, 1] in place."""
    np.minimum(x, 1, out=x)
    return np.maximum(x, 0, out=x)


def band(x, lo, hi, edge: float = EDGE_MM) -> np.ndarray:
    """Soft indicator of lo <= x <= hi."""
    return clamp01(np.minimum(x - lo, hi - x) * np.float32(1 / edge) + 0.5)


def disc(u, v, cu, cv, ru, rv) -> np.ndarray:
    """Soft indicator of the ellipse centred (cu, cv) with semi-axes (ru, rv)."""
    q = ((u - cu) * (1 / ru)) ** 2 + ((v - cv) * (1 / rv)) ** 2
    return clamp01((1 - q) * (np.minimum(ru, rv) / (2 * EDGE_MM)).astype(np.float32) + 0.5)


def paint(amp: np.ndarray, mask, value) -> None:
    """Composite `value` over `amp` in place with soft coverage `mask`."""
    amp += mask * (value - amp)


def leaflet(amp, u, v, hinge, angle, length: float, width: float, value: float) -> None:
    """Paint a valve leaflet: a segment of `length` mm from `hinge` at `angle` (rad; 0 = +u)."""
    du, dv = length * np.cos(angle), length * np.sin(angle)
    pu, pv = u - hinge[0], v - hinge[1]
    h = clamp01((pu * du + pv * dv) * (1 / (length * length)))
    dist = np.sqrt((pu - h * du) ** 2 + (pv - h * dv) ** 2)
    paint(amp, clamp01((width / 2 - dist) * np.float32(1 / EDGE_MM) + 0.5), value)


def closed_tip_angles(h1, h2, len1: float, len2: float, toward: float):
    """Angles of two leaflets hinged at h1, h2 whose tips meet (circle intersection).

    The meeting point lies on the side of the hinge line given by `toward` (+1: +u side).
    """
    du, dv = h2[0] - h1[0], h2[1] - h1[1]
    dist = np.sqrt(du * du + dv * dv)
    a = (len1**2 - len2**2 + dist**2) / (2 * dist)
    h = np.sqrt(np.maximum(len1**2 - a * a, 0.0))
    nu, nv = -dv / dist, du / dist  # normal of the hinge line
    flip = np.sign(nu * toward + 1e-9)
    pu = h1[0] + a * du / dist + flip * h * nu
    pv = h1[1] + a * dv / dist + flip * h * nv
    return np.arctan2(pv - h1[1], pu - h1[0]), np.arctan2(pv - h2[1], pu - h2[0])
