"""Detail-preserving fused view of a registration: fixed image + warped moving image -> RGB uint8.

Inside the overlap of the two fields the fused image keeps, at fine scales, whichever input has
the stronger detail at each pixel (vessels, capillaries) and, at coarse scales, both inputs'
average; outside the overlap it shows whichever image is there. Steps: each image's luminance is
stretched to its 1st-99th percentile inside its field (cross-modal pairs differ in brightness and
polarity); both are split into Laplacian pyramids; at the finest levels a per-pixel weight map
picks the band with the larger local energy (softened a little), coarser levels are averaged,
and the weights fade in smoothly where one field ends inside the other, so there are no seams;
the result is put back in the fixed image's luminance scale. The "learned" method replaces
only the fine-level choice with the mask of a small net (``core.fusion_net``): the coarse
average, the field handling and the colour stay the classical view's, and the net need not
learn them. A colour fixed image keeps its
colour: the fusion runs on luminance (YCrCb's Y) and the fixed image's chroma is put back,
because fusing R, G and B separately would tint CF with a gray modality's brightness. Fields are
found on a small copy and field presences at quarter resolution: full-resolution fundus photos
are ~8.5 MP, and the view must stay interactive.
"""
from __future__ import annotations

import cv2
import numpy as np

from retreg.core.io import to_float01
from retreg.core.modality import fov_mask
from retreg.core.overlays import percentile_range, rgb_u8

FINE_LEVELS = 3     # finest pyramid levels blended by the per-pixel choice; coarser: half each
SELECT_SIGMA = 0.3  # px at each fine level: window and softening of the per-pixel choice
MIN_BASE_SIDE = 16  # the coarsest pyramid level is at least this many px on its shorter side
MAX_LEVELS = 8      # deeper levels would only blend ever-coarser halves
FADE = 0.02         # share of the shorter side over which a field fades in inside the other
_PROBE_SIDE = 512   # the fields are found on a copy this small


def _split(img: np.ndarray) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """(luminance HxW: uint8, or float32 in [0, 1] for other depths; [Cr, Cb] uint8 or None)."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] < 3:
        img = img[:, :, 0]
    if img.ndim == 2:
        return (img if img.dtype == np.uint8 else to_float01(img)), None
    img = np.ascontiguousarray(img[:, :, :3])
    if img.dtype != np.uint8:
        ycc = cv2.split(cv2.cvtColor(to_float01(img), cv2.COLOR_RGB2YCrCb))
        return ycc[0], [np.round(c * 255.0).astype(np.uint8) for c in ycc[1:]]
    ycc = cv2.split(cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb))
    return ycc[0], ycc[1:]


def field(gray: np.ndarray) -> np.ndarray:
    """Where an image (HxW, uint8 or float in [0, 1]) surely has data (bool HxW): its field of
    view without the exactly-black canvas a warp leaves (so a small warped field is not taken
    for the whole frame), less a thin rim, since the field is found on a small copy."""
    h, w = gray.shape
    f = min(1.0, _PROBE_SIDE / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA) if f < 1 else gray
    # The hull of the non-black pixels (of their outline, which is quicker): a warp's canvas
    # is convex, and the data inside it can be black.
    canvas = (small > 0).astype(np.uint8)
    inner = cv2.erode(canvas, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                      borderValue=0)
    data = cv2.findNonZero(canvas - inner)
    canvas[:] = 0
    if data is not None:
        cv2.fillConvexPoly(canvas, cv2.convexHull(data), 1)
    mask = (fov_mask(small) & (canvas > 0)).astype(np.uint8)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8))  # the probe's edge cells hold canvas too
    if f < 1:  # bilinear, not nearest: a staircase edge would show where one image ends
        return cv2.resize(mask * np.uint8(255), (w, h), interpolation=cv2.INTER_LINEAR) > 127
    return mask > 0


def _stretch(y: np.ndarray, inside: np.ndarray) -> tuple[float, float]:
    """(1st percentile, 99th - 1st) of ``y`` inside ``inside``, in [0, 1] units."""
    if not inside.any():
        return 0.0, 1.0
    lo, span = percentile_range(y, inside, min_span=0.0)
    scale = 255.0 if y.dtype == np.uint8 else 1.0
    return lo / scale, max(span / scale, 1e-3)


def _normalised(y: np.ndarray, lo: float, span: float) -> np.ndarray:
    if y.dtype == np.uint8:
        return cv2.LUT(y, ((np.arange(256) / 255.0 - lo) / span).astype(np.float32))
    return (y - np.float32(lo)) * np.float32(1.0 / span)


def pyramid_levels(shape: tuple[int, int]) -> int:
    """How many Laplacian-pyramid levels the fusion uses for an image of ``shape``."""
    n = 1
    while min(shape) >> n >= MIN_BASE_SIDE and n < MAX_LEVELS:
        n += 1
    return n


def _up(img: np.ndarray, like: np.ndarray) -> np.ndarray:
    return cv2.pyrUp(img, dstsize=(like.shape[1], like.shape[0]))


def _resized(img: np.ndarray, like: np.ndarray, interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    return cv2.resize(img, (like.shape[1], like.shape[0]), interpolation=interp)


def _presence(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A field (uint8 0/255) at ``like``'s size in [0, 1], faded in inside its edge so weights
    change without a seam there."""
    small = _resized(mask, like, cv2.INTER_AREA)
    fade = max(1.0, FADE * min(like.shape))
    k = 2 * round(fade) + 1
    small = cv2.erode(small, np.ones((k, k), np.uint8)).astype(np.float32) / 255.0
    return cv2.GaussianBlur(small, (0, 0), fade / 2)


def _share(pf: np.ndarray, pm: np.ndarray, wanted: np.ndarray | float) -> np.ndarray:
    """Moving image's share from the two presences: ``wanted`` where both fields are present,
    all where only the moving one is, none where it is absent, blending smoothly between."""
    both = cv2.multiply(pf, pm)
    alone_m = cv2.subtract(pm, both)
    wm = cv2.add(np.multiply(both, wanted, dtype=np.float32), alone_m)
    return wm / (cv2.add(pf, alone_m) + np.float32(1e-6))


def _saturation(chroma: list[np.ndarray] | None, y: np.ndarray) -> list[np.ndarray] | None:
    """[Cr, Cb] - 128 per unit luminance, both in 8-bit units (dark pixels count as luminance
    16); None for a gray image."""
    if chroma is None:
        return None
    y255 = y.astype(np.float32) if y.dtype == np.uint8 else cv2.multiply(y, 255.0)
    inv = cv2.divide(1.0, cv2.max(y255, 16.0))
    return [cv2.multiply(cv2.subtract(c, 128.0, dtype=cv2.CV_32F), inv) for c in chroma]


def _select(band_a: np.ndarray, band_b: np.ndarray) -> np.ndarray:
    """Share of ``band_b``: 1 where its local energy beats ``band_a``'s, softened so the choice
    does not flicker between neighbouring pixels."""
    ea = cv2.GaussianBlur(cv2.multiply(band_a, band_a), (0, 0), SELECT_SIGMA)
    eb = cv2.GaussianBlur(cv2.multiply(band_b, band_b), (0, 0), SELECT_SIGMA)
    return cv2.GaussianBlur((eb > ea).astype(np.float32), (0, 0), SELECT_SIGMA)


METHODS = ("classical", "learned")


def _inputs(fixed, moving, fixed_field, moving_field):
    """Luminances, chromas, fields (uint8 0/255) and the normalised luminances, each filled with
    the other outside its own field (the pyramids then agree where only one image has data, so
    blurred weights near a field's edge blend nothing foreign)."""
    if fixed.shape[:2] != moving.shape[:2]:
        raise ValueError(f"fused view needs images of the same size, got {fixed.shape[:2]} and "
                         f"{moving.shape[:2]} (warp the moving image onto the fixed one first)")
    yf, cf = _split(fixed)
    ym, cm = _split(moving)
    ff = field(yf) if fixed_field is None else np.asarray(fixed_field, bool)
    fm = field(ym) if moving_field is None else np.asarray(moving_field, bool)
    lo_f, span_f = _stretch(yf, ff)
    nf = _normalised(yf, lo_f, span_f)
    nm = _normalised(ym, *_stretch(ym, fm))
    ff8, fm8 = ff.view(np.uint8) * np.uint8(255), fm.view(np.uint8) * np.uint8(255)
    cv2.copyTo(nm, cv2.bitwise_and(fm8, cv2.bitwise_not(ff8)), nf)
    cv2.copyTo(nf, cv2.bitwise_not(fm8), nm)
    return (yf, cf, ff8), (ym, cm, fm8), (nf, nm), (lo_f, span_f)


def normalised_pair(fixed: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """(fixed, moving luminance as float32 HxW, each stretched to its 1st-99th percentile in its
    field; overlap of the fields, bool HxW): what the fusion, and so the learned mask's net,
    works on (training uses it too, so the net sees at training what it sees in use)."""
    (_, _, ff8), (_, _, fm8), (nf, nm), _ = _inputs(fixed, moving, None, None)
    return nf, nm, cv2.bitwise_and(ff8, fm8) > 0


def _fine_choice(nf: np.ndarray, nm: np.ndarray, method: str):
    """``level, band_f, band_m -> moving share`` at the fine levels: the stronger band
    (classical), or the learned net's mask m at that level's size (learned)."""
    if method == "classical":
        return lambda lev, band_f, band_m: _select(band_f, band_m)
    if method != "learned":
        raise ValueError(f"fusion method must be one of {METHODS}, got {method!r}")
    from retreg.core.fusion_net import predict_mask  # torch loads only for the learned view
    m = predict_mask(nf, nm)
    return lambda lev, band_f, band_m: m if lev == 0 else _resized(m, band_f, cv2.INTER_AREA)


def _fuse(fixed, moving, fixed_field, moving_field, method):
    """(fused RGB uint8, moving share at full resolution float32 HxW)."""
    (yf, cf, ff8), (ym, cm, fm8), (nf, nm), (lo_f, span_f) = _inputs(
        fixed, moving, fixed_field, moving_field)
    choice = _fine_choice(nf, nm, method)
    n = pyramid_levels(yf.shape)
    gf, gm = [nf], [nm]
    for _ in range(n - 1):
        gf.append(cv2.pyrDown(gf[-1]))
        gm.append(cv2.pyrDown(gm[-1]))
    lf = [cv2.subtract(gf[i], _up(gf[i + 1], gf[i])) for i in range(n - 1)] + [gf[-1]]
    lm = [cv2.subtract(gm[i], _up(gm[i + 1], gm[i])) for i in range(n - 1)] + [gm[-1]]

    # Moving image's share per level: at the finest levels the chosen band where both images
    # have data, at the coarser ones half; all where only the moving image has data, none
    # where it has none. The fields' presences are found at quarter resolution. A field fades
    # only where it ends inside the other one: at an edge both share (a fundus aperture)
    # there is nothing to fade into.
    q = min(2, n - 1)
    pf = _presence(cv2.bitwise_or(ff8, cv2.bitwise_not(fm8)), gf[q])
    pm = _presence(cv2.bitwise_or(fm8, cv2.bitwise_not(ff8)), gf[q])
    even = [_share(pf, pm, 0.5)]
    for _ in range(q, n - 1):
        even.append(cv2.pyrDown(even[-1]))

    out = share0 = None
    for lev in range(n - 1, -1, -1):
        if lev < FINE_LEVELS:
            w = _share(_resized(pf, lf[lev]), _resized(pm, lf[lev]),
                       choice(lev, lf[lev], lm[lev]))
        else:
            w = even[lev - q] if lev >= q else _resized(even[0], lf[lev])
        share0 = w
        band = cv2.add(lf[lev], cv2.multiply(w, cv2.subtract(lm[lev], lf[lev])))
        out = band if out is None else cv2.add(_up(out, band), band)
    y8 = cv2.addWeighted(out, 255.0 * span_f, out, 0.0, 255.0 * lo_f, dtype=cv2.CV_8U)

    if cf is None and cm is None:
        rgb = cv2.cvtColor(y8, cv2.COLOR_GRAY2RGB)
    else:
        # Chroma per unit luminance (saturation), so a pixel made brighter or darker by the
        # fusion keeps its hue and saturation; the fixed image's, fading to the moving image's
        # where the fixed field ends.
        pf_full = _resized(pf, y8)
        sat_f = _saturation(cf, yf)
        sat_m = _saturation(cm, ym)
        if sat_f is None:
            sat = [cv2.multiply(c, cv2.subtract(1.0, pf_full)) for c in sat_m]
        elif sat_m is None:
            sat = [cv2.multiply(c, pf_full) for c in sat_f]
        else:
            sat = [cv2.add(m, cv2.multiply(cv2.subtract(f, m), pf_full))
                   for f, m in zip(sat_f, sat_m)]
        chroma = [cv2.addWeighted(cv2.multiply(c, y8, dtype=cv2.CV_32F), 1.0, c, 0.0, 128.0,
                                  dtype=cv2.CV_8U) for c in sat]
        rgb = cv2.cvtColor(cv2.merge([y8, *chroma]), cv2.COLOR_YCrCb2RGB)
    cv2.copyTo(rgb_u8(fixed), cv2.bitwise_not(fm8), rgb)
    return rgb, share0


def fused(fixed: np.ndarray, moving: np.ndarray, fixed_field: np.ndarray | None = None,
          moving_field: np.ndarray | None = None, method: str = "classical") -> np.ndarray:
    """Fixed image and warped moving image (same height and width; gray or RGB, uint8 / uint16 /
    float in [0, 1]) fused into one RGB uint8 image in the fixed image's brightness scale.

    ``fixed_field`` / ``moving_field`` (bool HxW) say where each image has data; by default
    ``field`` finds them. Where the moving image has no data the output is the fixed image
    unchanged; where only the moving one has, it is the moving image with its luminance mapped
    onto the fixed image's 1st-99th percentile range. ``method``: "classical" keeps the
    locally stronger fine detail; "learned" lets the bundled net (``core.fusion_net``) choose.
    """
    return _fuse(fixed, moving, fixed_field, moving_field, method)[0]


def fusion_mask(fixed: np.ndarray, moving: np.ndarray, method: str = "classical") -> np.ndarray:
    """The decision behind ``fused``: the moving image's share of the finest detail (float32 HxW
    in [0, 1]; 0 where it has no data, 1 where only it has)."""
    return _fuse(fixed, moving, None, None, method)[1]


def fusion_mask_view(fixed: np.ndarray, moving: np.ndarray, method: str = "classical"
                     ) -> np.ndarray:
    """``fusion_mask`` as an RGB uint8 image to look at: white where the moving image's detail
    is kept, black where the fixed image's is."""
    mask8 = cv2.convertScaleAbs(fusion_mask(fixed, moving, method), alpha=255.0)
    return cv2.cvtColor(mask8, cv2.COLOR_GRAY2RGB)


# The fusion's views by name (CLI --overlay, the app's overlay kinds): (what, method).
VIEWS = {"fused": ("fused", "classical"), "fused-learned": ("fused", "learned"),
         "fusion-mask": ("mask", "classical"), "fusion-mask-learned": ("mask", "learned")}


def fusion_view(kind: str, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """The view ``kind`` (a key of ``VIEWS``) of fixed + warped moving, RGB uint8."""
    if kind not in VIEWS:
        raise ValueError(f"fusion view must be one of {list(VIEWS)}, got {kind!r}")
    what, method = VIEWS[kind]
    return (fused if what == "fused" else fusion_mask_view)(fixed, moving, method=method)
