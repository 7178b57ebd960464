"""An independent similarity measure, to judge elastix's answers rather than trust them.

:class:`MiProbe` measures the mutual information (nats; higher is better) between masked MVCT
voxels and the planning CT for any ``daily → planning`` transform, with fixed histogram edges
so values for different transforms are comparable. It decides two things in
:mod:`registration.rigid`: whether the answer is a local maximum (translations of
±:data:`PROBE_STEP_MM` along x, y, z and rotations of ±:data:`PROBE_STEP_DEG` about x, y, z
through the centre of the masked anatomy — no step may improve it), and which of two distinct
optima is better.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from registration.frames import FloatArray, rot_x, rot_y, rot_z
from registration.geometry import RigidTransformLps
from registration.pyramid import DAILY_WINDOW_HU, PLANNING_WINDOW_HU

PROBE_STEP_MM = 1.5
PROBE_STEP_DEG = 1.0
#: A step must improve MI by more than this to count as "not at the optimum".
PROBE_TOLERANCE_NATS = 0.0
MAX_SAMPLES = 20_000
BINS = 32


class MiProbe:
    """Mutual information of the masked MVCT against the planning CT (see module docstring).

    Up to 20 000 masked MVCT voxels are drawn once, mapped into the planning CT by a daily →
    planning transform, linearly interpolated, and binned in a 32 × 32 joint histogram.
    """

    def __init__(self, image: sitk.Image, mask: sitk.Image, planning: sitk.Image, seed: int):
        sel = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
        if len(sel) > MAX_SAMPLES:
            sel = sel[np.random.default_rng(seed).choice(len(sel), MAX_SAMPLES, replace=False)]
        self.usable = len(sel) >= 100
        d = np.array(image.GetDirection()).reshape(3, 3)
        self.fixed_values = sitk.GetArrayViewFromImage(image)[tuple(sel.T)]
        spacing = np.array(image.GetSpacing())
        self.points = (sel[:, ::-1] * spacing) @ d.T + np.array(image.GetOrigin())
        self.center: FloatArray = (
            self.points.mean(axis=0) if len(sel) else np.array(image.GetOrigin())
        )
        self.planning = planning
        self.moving_array = sitk.GetArrayViewFromImage(planning)
        self.fixed_edges = np.linspace(*DAILY_WINDOW_HU, BINS + 1)
        self.moving_edges = np.linspace(*PLANNING_WINDOW_HU, BINS + 1)
        # the MVCT samples never move: their bins are found once, not at every evaluation
        self.fixed_bins = _bin_index(self.fixed_values, self.fixed_edges)
        self.planning_origin = np.array(planning.GetOrigin())
        self.planning_direction = np.array(planning.GetDirection()).reshape(3, 3)
        self.planning_spacing = np.array(planning.GetSpacing())

    def mi(self, daily_to_planning: RigidTransformLps) -> float:
        if not self.usable:
            return float("nan")
        pts = daily_to_planning.apply_array(self.points)
        cont = ((pts - self.planning_origin) @ self.planning_direction) / self.planning_spacing
        moving_values = ndimage.map_coordinates(
            self.moving_array, cont[:, ::-1].T, order=1, mode="nearest"
        )
        moving_bins = _bin_index(moving_values, self.moving_edges)
        n = BINS + 2  # bin 0 and bin BINS + 1 hold the values outside the edges
        counts = np.bincount(self.fixed_bins * n + moving_bins, minlength=n * n)
        joint = counts.reshape(n, n)[1:-1, 1:-1].astype(np.float64)
        p = joint / joint.sum()
        px = p.sum(axis=1, keepdims=True)
        py = p.sum(axis=0, keepdims=True)
        nz = p > 0
        return float(np.sum(p[nz] * np.log(p[nz] / (px @ py)[nz])))

    def steps(self) -> list[RigidTransformLps]:
        """The 12 probe steps (daily-side), translations then rotations about the centre."""
        out: list[RigidTransformLps] = []
        for axis in range(3):
            for sign in (-1.0, 1.0):
                step = np.zeros(3)
                step[axis] = sign * PROBE_STEP_MM
                out.append(RigidTransformLps.from_rotation_translation(np.eye(3), step))
        c = self.center
        for rot in (rot_x, rot_y, rot_z):
            for sign in (-1.0, 1.0):
                r = rot(sign * PROBE_STEP_DEG)
                out.append(RigidTransformLps.from_rotation_translation(r, c - r @ c))
        return out

    def is_local_maximum(self, estimate: RigidTransformLps) -> bool:
        """True when no probe step (translation or rotation) improves MI."""
        best = self.mi(estimate)
        for step in self.steps():
            if self.mi(step.then(estimate)) > best + PROBE_TOLERANCE_NATS:
                return False
        return True


def _bin_index(values: npt.NDArray[np.floating[Any]], edges: FloatArray) -> npt.NDArray[np.intp]:
    """Histogram bin of each value as ``np.histogram2d`` counts it: 1 … len(edges) − 1 inside
    (the last edge belongs to the last bin), 0 below and len(edges) above the edges."""
    index: npt.NDArray[np.intp] = np.searchsorted(edges, values, side="right")
    index[values == edges[-1]] -= 1
    return index
