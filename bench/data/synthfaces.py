"""`synthfaces`: procedurally rendered 64×64 RGB cartoon faces, deterministic from a seed.

Every binary label is a threshold on a continuous characteristic that visibly varies inside
each class, so a model that captures label *characteristics* (not just values) can be
checked against the truth:

| label            | characteristic (factor)   | rendering                                  | label = 1 when |
| ---------------- | ------------------------- | ------------------------------------------ | -------------- |
| Smiling          | mouth_curvature ∈ [−1, 1] | parabola of the mouth bends up or down     | > 0            |
| Eyeglasses       | frame_strength ∈ [0, 1]   | frame thickness and opacity, then lens tint | > 0.7          |
| Blond_Hair       | hair_hue ∈ [0, 1]         | hair colour from dark brown to blond       | > 0.65         |
| Bangs            | fringe_length ∈ [0, 1]    | hairline lowers over the forehead          | > 0.6          |
| Beard            | beard_density ∈ [0, 1]    | opacity and height of the beard            | > 0.6          |
| Pale_Skin        | skin_lightness ∈ [0, 1]   | skin colour from tan to pale               | > 0.7          |
| Wearing_Necktie  | tie_width ∈ [0, 1]        | width of the tie                           | > 0.5          |

Each characteristic keeps a gap of ±0.08 of its range around its threshold (labels are
decidable from the image). Context factors carry no label: background_hue, face_x, face_y, face_size.
Correlated pair: beard_density and tie_width share a Gaussian copula with ρ = 0.7 (uniform
marginals), so Beard and Wearing_Necktie are correlated labels, as Male-linked ones are in CelebA.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import ndtr

from bench.data.base import DataSource, LabelledImages
from bench.errors import BenchError

SIZE = 64
LABELS = ("Smiling", "Eyeglasses", "Blond_Hair", "Bangs", "Beard", "Pale_Skin", "Wearing_Necktie")
CHARACTERISTICS = (
    "mouth_curvature", "frame_strength", "hair_hue", "fringe_length", "beard_density",
    "skin_lightness", "tie_width",
)
THRESHOLDS = (0.0, 0.7, 0.65, 0.6, 0.6, 0.7, 0.5)
CONTEXT = ("background_hue", "face_x", "face_y", "face_size")
FACTORS = CHARACTERISTICS + CONTEXT
COPULA_CORRELATION = 0.7
MARGIN = 0.08
RENDER_BATCH = 1000


def _away_from_threshold(u: np.ndarray, threshold: float) -> np.ndarray:
    """Map u ∈ [0, 1] monotonically onto [0, t − m] ∪ [t + m, 1]: a gap of 2m around t."""
    below = u * (threshold - MARGIN) / threshold
    above = threshold + MARGIN + (u - threshold) * (1 - threshold - MARGIN) / (1 - threshold)
    return np.where(u > threshold, above, below)


def sample_factors(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 11) factor values in the order of FACTORS.

    Each characteristic is uniform on its range except for a gap of ±MARGIN (of the range)
    around its label's threshold: labels are decidable from the image, while the
    characteristic still varies over most of each class.
    """
    uniform = rng.random((count, 8))
    normal = rng.standard_normal((count, 2))
    tie_normal = COPULA_CORRELATION * normal[:, 0] + np.sqrt(1 - COPULA_CORRELATION**2) * normal[:, 1]
    raw = np.stack([uniform[:, 0], uniform[:, 1], uniform[:, 2], uniform[:, 3],
                    ndtr(normal[:, 0]), uniform[:, 4], ndtr(tie_normal)], axis=1)
    unit_thresholds = [(t + 1) / 2 if name == "mouth_curvature" else t
                       for name, t in zip(CHARACTERISTICS, THRESHOLDS, strict=True)]
    characteristics = np.stack([_away_from_threshold(raw[:, j], t) for j, t in enumerate(unit_thresholds)], 1)
    characteristics[:, 0] = 2 * characteristics[:, 0] - 1  # mouth_curvature ∈ [−1, 1]
    context = np.stack([
        uniform[:, 5],                   # background_hue
        12 * uniform[:, 6] - 6,          # face_x (pixels from centre)
        8 * uniform[:, 7] - 4,           # face_y
        rng.uniform(15, 20, count),      # face_size (radius in pixels)
    ], axis=1)
    return np.concatenate([characteristics, context], 1).astype(np.float32)


def labels_from_factors(factors: np.ndarray) -> np.ndarray:
    return (factors[:, : len(LABELS)] > np.asarray(THRESHOLDS, dtype=np.float32)).astype(np.float32)


def _column(values: np.ndarray) -> np.ndarray:
    return values[:, None, None]


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a shape from its signed distance in pixels (inside < 0)."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _paint(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """canvas (3, B, H, W) ← alpha·colour + (1 − alpha)·canvas; colour (B, 3) or (3,)."""
    colour = np.asarray(colour, dtype=np.float32).reshape(-1, 3)
    alpha = np.broadcast_to(alpha, canvas.shape[1:]).astype(np.float32, copy=False)
    for channel in range(3):
        plane = canvas[channel]
        plane += alpha * (colour[:, channel, None, None] - plane)


def _lerp(a: tuple, b: tuple, t: np.ndarray) -> np.ndarray:
    a_, b_ = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a_ + t[:, None] * (b_ - a_)


def render(factors: np.ndarray) -> np.ndarray:
    """uint8 images (B, 3, 64, 64) for factor rows (B, 11)."""
    (curve, frame, hue, fringe, beard, skin, tie, background, face_x, face_y, radius) = factors.T
    count = len(factors)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    x, y = xs[None], ys[None]
    cx, cy, r = _column(32 + face_x), _column(29 + face_y), _column(radius)
    canvas = np.empty((3, count, SIZE, SIZE), np.float32)
    phase = background[None, :] + np.array([0, 1 / 3, 2 / 3], np.float32)[:, None]
    canvas[:] = (0.55 + 0.3 * np.cos(2 * np.pi * phase))[:, :, None, None]

    hair = _lerp((0.22, 0.13, 0.07), (0.95, 0.84, 0.42), hue)
    skin_colour = _lerp((0.62, 0.42, 0.30), (0.98, 0.90, 0.85), skin)
    # shoulders and shirt, then the tie
    shoulders = (np.hypot((x - cx) / 27, (y - 70) / 20) - 1) * 20
    _paint(canvas, _coverage(shoulders), (0.88, 0.88, 0.92))
    tie_top = cy + 0.95 * r
    taper = np.clip((y - tie_top) / (SIZE - tie_top), 0, 1)
    half_width = (0.4 + 4.5 * _column(tie)) * (0.6 + 0.6 * taper)
    tie_distance = np.maximum(np.abs(x - cx) - half_width, tie_top - y)
    _paint(canvas, _coverage(tie_distance), (0.72, 0.10, 0.16))
    # hair behind the head, the face, then the fringe over the forehead
    behind = (np.hypot((x - cx) / (1.02 * r), (y - cy + 0.12 * r) / (1.08 * r)) - 1) * r
    _paint(canvas, _coverage(np.maximum(behind, y - cy)), hair)
    face = (np.hypot((x - cx) / (0.85 * r), (y - cy) / r) - 1) * r
    _paint(canvas, _coverage(face), skin_colour)
    hairline = cy - 0.62 * r + _column(fringe) * 0.42 * r
    _paint(canvas, _coverage(np.maximum(face, y - hairline)), hair)
    # beard over the chin: its opacity and its reach up the cheeks grow with the density
    beard_top = cy + (0.45 - 0.35 * _column(beard)) * r
    _paint(canvas, 0.9 * _column(beard) * _coverage(np.maximum(face, beard_top - y)), hair * 0.55)
    # eyes and glasses
    for side in (-1, 1):
        ex, ey = cx + side * 0.36 * r, cy - 0.08 * r
        eye_distance = np.hypot(x - ex, y - ey)
        _paint(canvas, _coverage(eye_distance - 0.09 * r), (0.08, 0.08, 0.1))
        ring_radius = 0.22 * r
        thickness = 0.3 + 1.8 * _column(frame)
        ring = np.abs(eye_distance - ring_radius) - thickness / 2
        tint = 0.6 * np.clip((frame - 0.7) / 0.3, 0, 1)
        _paint(canvas, _column(tint) * _coverage(eye_distance - ring_radius), (0.1, 0.1, 0.15))
        _paint(canvas, np.clip(3 * _column(frame), 0, 1) * _coverage(ring), (0.05, 0.05, 0.05))
    bridge = np.maximum(np.abs(y - (cy - 0.1 * r)) - (0.15 + 0.9 * _column(frame)), np.abs(x - cx) - 0.14 * r)
    _paint(canvas, np.clip(3 * _column(frame), 0, 1) * _coverage(bridge), (0.05, 0.05, 0.05))
    # mouth: y = cy + 0.45r + c·0.2r·(1 − s²) on |s| ≤ 1, s = (x − cx)/(0.32r); c > 0 smiles
    s = (x - cx) / (0.32 * r)
    mouth_y = cy + 0.45 * r + _column(curve) * 0.2 * r * (1 - s**2)
    mouth = np.maximum(np.abs(y - mouth_y) - 0.8, (np.abs(s) - 1) * 0.32 * r)
    _paint(canvas, _coverage(mouth), (0.55, 0.08, 0.1))
    return np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8).transpose(1, 0, 2, 3)


def downsample(images: np.ndarray, image_size: int) -> np.ndarray:
    """Box-filter uint8 images (B, 3, 64, 64) to (B, 3, image_size, image_size); 64 must be a multiple."""
    if image_size not in (64, 32):
        raise BenchError(f"synthfaces image_size {image_size} is not supported; use 64 or 32 (the networks' sizes)")
    factor = SIZE // image_size
    blocks = images.reshape(len(images), 3, image_size, factor, image_size, factor).astype(np.float32)
    return np.round(blocks.mean((3, 5))).astype(np.uint8)


# --- the truth of every operation (evaluators/controls.py renders it) ------------------------------------------
CONTEXT_RANGES = {"background_hue": (0.0, 1.0), "face_x": (-6.0, 6.0), "face_y": (-4.0, 4.0), "face_size": (15.0, 20.0)}
"""The range of each context factor, as `sample_factors` draws them (uniformly)."""


def _unit(values: np.ndarray, i: int) -> np.ndarray:
    """Label i's characteristic on the unit scale of its threshold (mouth curvature [−1, 1] → [0, 1])."""
    return (values + 1) / 2 if CHARACTERISTICS[i] == "mouth_curvature" else values


def _from_unit(values: np.ndarray, i: int) -> np.ndarray:
    return 2 * values - 1 if CHARACTERISTICS[i] == "mouth_curvature" else values


def _unit_threshold(i: int) -> float:
    return float(_unit(np.float64(THRESHOLDS[i]), i))


def unit_factors(factors: np.ndarray) -> np.ndarray:
    """Factor rows (B, 11) on one [0, 1] scale: each characteristic on the unit scale of its threshold, each
    context factor over its range. What the factor reader (`evaluators/factor_reader.py`) learns to read."""
    characteristics = [_unit(factors[:, i], i) for i in range(len(LABELS))]
    context = [(factors[:, len(LABELS) + j] - low) / (high - low)
               for j, (low, high) in enumerate(CONTEXT_RANGES.values())]
    return np.stack(characteristics + context, 1).astype(np.float32)


def render_at(factors: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 images (B, 3, image_size, image_size) of factor rows (B, 11), exactly as `build` renders them."""
    return np.concatenate([downsample(render(factors[i : i + RENDER_BATCH]), image_size)
                           for i in range(0, len(factors), RENDER_BATCH)])


def with_label(factors: np.ndarray, i: int, value: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """The factors with label i set to `value`, everything else equal: the true result of an intervention.

    A characteristic already on `value`'s side of its threshold is kept. Otherwise it is mirrored
    across the threshold (the same distance from it, on the other side, inside the range): the
    deterministic answer. With `rng`, it is drawn uniformly from `value`'s side instead (a
    stochastic intervention)."""
    changed = factors.copy()
    unit, threshold = _unit(factors[:, i].astype(np.float64), i), _unit_threshold(i)
    side = _side_sample(np.full(len(factors), value), threshold, rng) if rng is not None else None
    mirrored = np.clip(2 * threshold - unit, 0.0, 1.0)
    on_side = (unit > threshold) == bool(value)
    new = np.where(on_side, unit, mirrored) if side is None else side
    changed[:, i] = _from_unit(new, i).astype(factors.dtype)
    return changed


def _side_sample(labels: np.ndarray, threshold: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform values on each label's side of the threshold, outside the gap: [0, t − m] or [t + m, 1]."""
    u = rng.random(len(labels))
    return np.where(labels > 0.5, threshold + MARGIN + u * (1 - threshold - MARGIN), u * (threshold - MARGIN))


def factors_for_labels(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Factor rows (B, 11) whose labels are `labels` (B, 7): each characteristic uniform on its label's side of
    the threshold (outside the gap), each context factor uniform on its range. The true answer of a
    conditional generation; unlike the data set, Beard and Wearing_Necktie are drawn independently."""
    characteristics = np.stack([_from_unit(_side_sample(labels[:, i], _unit_threshold(i), rng), i)
                                for i in range(len(LABELS))], 1)
    context = np.stack([low + (high - low) * rng.random(len(labels)) for low, high in CONTEXT_RANGES.values()], 1)
    return np.concatenate([characteristics, context], 1).astype(np.float32)


def build(
    source: DataSource | None = None, n_train: int = 20_000, n_valid: int = 2_000, n_test: int = 2_000,
    seed: int = 0, image_size: int = SIZE,
) -> LabelledImages:
    """Render the data set; the same sizes and seed always give the same images (`source` is not read).

    `image_size` 32 box-filters the 64×64 renderings (the smoke and quick presets use it for speed).
    """
    total = n_train + n_valid + n_test
    factors = sample_factors(total, np.random.default_rng(seed))
    images = np.concatenate([downsample(render(factors[i : i + RENDER_BATCH]), image_size)
                             for i in range(0, total, RENDER_BATCH)])
    order = np.arange(total)
    return LabelledImages(
        name="synthfaces",
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels_from_factors(factors)),
        label_names=LABELS,
        task="multilabel",
        splits={"train": order[:n_train], "valid": order[n_train : n_train + n_valid],
                "test": order[n_train + n_valid :]},
        factors=torch.from_numpy(factors),
        factor_names=FACTORS,
        notes={"source": f"rendered, seed {seed}"},
    )
