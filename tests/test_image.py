"""write_image.comp / vkbands.image against the NumPy reference (vkbands.reference, "pictures") and
closed forms: every colour map x range mode, block expansion, grid layout, fade, reset, NaN/Inf,
bad arguments. Note: 1-D strips and band x time images are plain (P, 1, N) / (1, T, L) panels drawn
with a vertical expansion sy, so the panel tests cover them; test_strip checks the (N,) shorthand."""
import numpy as np
import pytest
from PIL import Image

from vkbands import reference as R
from vkbands.image import (BACKGROUND, NONFINITE, ImageWriter, layout, render_image, save_png)

BLUE = tuple(int(round(c * 255)) for c in R.PICTURE_BLUE)
RED = tuple(int(round(c * 255)) for c in R.PICTURE_RED)


def _field(shape, seed=0, scale=1.0, bad=True):
    x = (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)
    if bad:
        flat = x.reshape(-1)
        flat[[1, 7, 12]] = [np.nan, np.inf, -np.inf]
    return x


def _ambiguous(x, cmap, mode, vmin, vmax, tau, sy, sx, cols, gap):
    """Pixels whose ternary class sits within round-off of the threshold (either answer is right)."""
    P, H, W = x.shape
    mask = np.zeros(R.picture_layout(P, H, W, cols, sx, sy, gap), bool)
    if cmap != "ternary":
        return mask
    lo, hi = R.PICTURE_DEFAULT_LIMITS[cmap]
    c, k = R.picture_range(x, mode, lo if vmin is None else vmin, hi if vmax is None else vmax)
    with np.errstate(invalid="ignore"):
        near = np.abs(np.abs(R.picture_s0(x, c[:, None, None], k[:, None, None])) - tau) < 1e-5
    near = np.repeat(np.repeat(near, sy, 1), sx, 2)
    for p in range(P):
        y0, x0 = (p // cols) * (H * sy + gap), (p % cols) * (W * sx + gap)
        mask[y0:y0 + H * sy, x0:x0 + W * sx] = near[p]
    return mask



def _assert_close(got, ref, ignore=None):
    assert got.shape == ref.shape and got.dtype == np.uint8
    d = np.abs(got.astype(np.int16) - ref.astype(np.int16)).max(axis=-1)
    if ignore is not None:
        d[ignore] = 0
    assert d.max() <= 1, f"{(d > 1).sum()} pixels differ by more than 1 LSB (max {d.max()})"


@pytest.mark.parametrize("range", R.PICTURE_RANGES)
@pytest.mark.parametrize("cmap", R.PICTURE_CMAPS)
def test_cmap_and_range_match_reference(ctx, cmap, range):
    # 5 panels on 3 columns (one empty cell), sy != sx, NaN/Inf inside, values beyond the fixed range.
    x = _field((5, 6, 7), seed=3, scale=1.5)
    x[3] *= 0.01                      # a quiet panel: per_band must rescale it, symmetric must not
    vmin, vmax, tau = (-0.5, 2.0, 0.2) if range == "fixed" else (None, None, 0.2)
    got = render_image(x, cmap=cmap, range=range, vmin=vmin, vmax=vmax, tau=tau, eps=1e-2,
                       scale=(2, 3), cols=3, gap=1)
    ref, _ = R.render_panels(x, cmap, range, vmin, vmax, tau=tau, eps=1e-2, cols=3, sx=3, sy=2, gap=1)
    _assert_close(got, ref, _ambiguous(x, cmap, range, vmin, vmax, tau, 2, 3, 3, 1))


@pytest.mark.parametrize("range", ["symmetric", "per_band"])
def test_multichunk_reduction(ctx, range):
    # 100 x 90 values per panel: more than one reduction chunk per panel; the maxima sit in the last one.
    x = _field((3, 100, 90), seed=5, bad=True)
    x[0, -1, -1] = 40.0
    x[2, -2, 5] = -9.0
    with ImageWriter(ctx, 3, 100, 90) as w:
        assert w._chunks > 1, "this test needs a panel longer than one reduction chunk"
    got = render_image(x, cmap="diverging", range=range)
    ref, _ = R.render_panels(x, "diverging", range, cols=3, gap=2)
    _assert_close(got, ref)


def test_closed_form_colours(ctx):
    v = np.array([[-1.0, -0.5, 0.0, 0.5, 1.0, 7.0, np.nan, np.inf, -np.inf]], np.float32)
    dv = render_image(v[None], cmap="diverging")[0]
    assert tuple(dv[0]) == BLUE + (255,) and tuple(dv[2]) == (255, 255, 255, 255)
    assert tuple(dv[4]) == RED + (255,) and tuple(dv[5]) == RED + (255,)     # clamped
    for i in (6, 7, 8):
        assert tuple(dv[i]) == NONFINITE
    half = 255 - 0.5 * (255 - np.array(BLUE))
    assert np.abs(dv[1, :3] - half).max() <= 1
    gr = render_image(v[None], cmap="grey", vmin=-1, vmax=1)[0]
    assert list(gr[:5, 0]) == [0, 64, 128, 191, 255] and tuple(gr[6]) == NONFINITE
    tr = render_image(v[None], cmap="ternary", tau=0.6)[0]
    assert [tuple(c[:3]) for c in tr[:5]] == [BLUE, (255, 255, 255), (255, 255, 255), (255, 255, 255), RED]
    lg = render_image(np.array([[1e-3, 1.0]], np.float32)[None], cmap="log", eps=1e-3)[0]
    # s = log1p(1) / log1p(1000) = 0.1003: one tenth of the way from white to red.
    expect = 255 + (np.array(RED) - 255) * np.log1p(1.0) / np.log1p(1e3)
    assert np.abs(lg[0, :3] - expect).max() <= 1 and tuple(lg[1, :3]) == RED


@pytest.mark.parametrize("cmap, mid", [("grey", 128), ("diverging", 255), ("log", 255)])
def test_symmetric_all_zero_is_middle_colour(ctx, cmap, mid):
    img = render_image(np.zeros((4, 4), np.float32), cmap=cmap, range="symmetric")
    assert (img[..., :3] == mid).all() and (img[..., 3] == 255).all()


def test_block_expansion_and_grid_layout(ctx):
    P, H, W, cols, sy, sx, gap = 5, 3, 4, 2, 3, 5, 2
    x = np.arange(P * H * W, dtype=np.float32).reshape(P, H, W) / (P * H * W)
    img = render_image(x, cmap="grey", scale=(sy, sx), cols=cols, gap=gap)
    assert img.shape == (3 * (H * sy + gap) - gap, 2 * (W * sx + gap) - gap, 4)
    assert layout(P, H, W, cols, sx, sy, gap) == img.shape[:2]
    with ImageWriter(None, P, H, W, cols=cols, scale=(sy, sx), gap=gap) as w:
        inside = np.zeros(img.shape[:2], bool)
        for p in range(P):
            y0, x0, y1, x1 = w.panel_rect(p)
            tile = img[y0:y1, x0:x1, 0].astype(int)
            assert tile.shape == (H * sy, W * sx)
            # nearest block expansion: every sy x sx block is one value, the values in order
            assert (tile == np.repeat(np.repeat(tile[::sy, ::sx], sy, 0), sx, 1)).all()
            assert np.abs(tile[::sy, ::sx] - np.round(x[p] * 255)).max() <= 1
            inside[y0:y1, x0:x1] = True
    assert (img[~inside] == BACKGROUND).all()                       # gaps and the empty 6th cell
    y0, x0, _, _ = (2 * (H * sy + gap), 1 * (W * sx + gap), 0, 0)
    assert (img[y0:, x0:] == BACKGROUND).all()


def test_strip_and_band_time_panels(ctx):
    x = np.linspace(-1, 1, 40, dtype=np.float32)
    img = render_image(x)                                           # (N,) -> one strip, sy = ceil(N/8)
    assert img.shape == (5, 40, 4) and (img == img[:1]).all()
    ref, _ = R.render_panels(x[None, None], "diverging", "fixed", sy=5)
    _assert_close(img, ref)
    bands = np.stack([x, -x, 0.5 * x])[:, None, :]                 # (P, 1, N) strips stack in a column
    img = render_image(bands, scale=(4, 2))
    ref, _ = R.render_panels(bands, "diverging", "fixed", cols=1, sx=2, sy=4, gap=2)
    _assert_close(img, ref)


def test_fade_reset_and_replay(ctx):
    P, H, W, a = 2, 5, 6, 0.7
    frames = [_field((P, H, W), seed=s, bad=False) for s in range(5)]
    frames[3][0, 0, 0] = np.nan                                     # a NaN sticks until reset
    w = ImageWriter(ctx, P, H, W, cols=2, scale=(2, 1), gap=1)
    img, panels = w.image(), ctx.array(frames[0])
    try:
        acc = None
        for t, f in enumerate(frames):
            panels.upload(f)
            with ctx.recorder() as rec:
                w.record(rec, panels, img, cmap="diverging", fade=a, reset=(t == 0))
            ref, acc = R.render_panels(f, "diverging", "fixed", cols=2, sy=2, gap=1, acc=acc, fade=a,
                                       reset=(t == 0))
            _assert_close(img.numpy(), ref)
            y0, x0, y1, x1 = w.panel_rect(0)
            assert np.allclose(w.acc.numpy()[y0:y1:2, x0:x1], acc[0], rtol=1e-6, atol=1e-7, equal_nan=True)
        assert tuple(img.numpy()[0, 0]) == NONFINITE
        # The fade is visible: the last picture differs from an unfaded one.
        plain, _ = R.render_panels(frames[-1], "diverging", "fixed", cols=2, sy=2, gap=1)
        assert np.abs(img.numpy().astype(int) - plain).max() > 8
        # Reset: the accumulator forgets everything (NaN included).
        with ctx.recorder() as rec:
            w.record(rec, panels, img, fade=a, reset=True)
        _assert_close(img.numpy(), plain)
        # One recording replayed for new frames (the viewer's loop): no re-recording.
        rec = ctx.recorder()
        w.record(rec, panels, img, cmap="grey", range="per_band", fade=a)
        cur = R.fade_step(None, frames[-1], a)
        for f in frames[:3]:
            panels.upload(f)
            rec.submit()
            ref, cur = R.render_panels(f, "grey", "per_band", cols=2, sy=2, gap=1, acc=cur, fade=a)
            _assert_close(img.numpy(), ref)
        rec.close()
    finally:
        img.close(), panels.close(), w.close()


def test_device_field_and_zero_fade(ctx):
    x = _field((9, 9), seed=2)
    dev = ctx.array(x)
    try:
        got = render_image(dev, cmap="log", range="symmetric")
        assert isinstance(got, np.ndarray)
        _assert_close(got, R.render_panels(x, "log", "symmetric")[0])
    finally:
        dev.close()


def test_save_png(ctx, tmp_path):
    x = _field((2, 8, 8), seed=4)
    p = save_png(tmp_path / "a" / "b" / "field.png", x, cmap="grey", range="per_band", scale=2)
    back = np.asarray(Image.open(p))
    np.testing.assert_array_equal(back, render_image(x, cmap="grey", range="per_band", scale=2))
    q = save_png(str(tmp_path / "img.png"), back)
    np.testing.assert_array_equal(np.asarray(Image.open(q)), back)
    with pytest.raises(TypeError, match="apply to fields only"):
        save_png(tmp_path / "x.png", back, cmap="grey")


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(cmap="jet"), ValueError, ["cmap='jet'", "diverging"]),
    (dict(range="auto"), ValueError, ["range='auto'", "per_band"]),
    (dict(vmin=1.0, vmax=1.0), ValueError, ["vmin=1.0", "vmin < vmax"]),
    (dict(vmax=float("nan")), ValueError, ["vmax=nan", "finite"]),
    (dict(scale=0), ValueError, ["scale=0", ">= 1"]),
    (dict(scale=1.5), TypeError, ["scale=1.5", "integer"]),
    (dict(scale=(2, 0)), ValueError, ["sx", ">= 1"]),
    (dict(cols=0), ValueError, ["cols=0"]),
    (dict(gap=-1), ValueError, ["gap=-1"]),
    (dict(tau=-0.1), ValueError, ["tau=-0.1", ">= 0"]),
    (dict(eps=0), ValueError, ["eps=0", "> 0"]),
    (dict(field=np.zeros((2, 2, 2, 2))), ValueError, ["field.shape=(2, 2, 2, 2)", "(P, H, W)"]),
    (dict(field=np.zeros((0, 4))), ValueError, ["empty"]),
    (dict(field=np.zeros((4, 4), np.complex64)), TypeError, ["field"]),
    (dict(field="abc"), TypeError, ["field"]),
])
def test_bad_arguments(ctx, kwargs, exc, words):
    kwargs = dict(kwargs)
    field = kwargs.pop("field", np.zeros((4, 4), np.float32))
    with pytest.raises(exc) as e:
        render_image(field, **kwargs)
    for w in words:
        assert w in str(e.value)


def test_writer_bad_arguments(ctx):
    w = ImageWriter(ctx, 2, 4, 4)
    img, wrong = w.image(), ctx.empty((3, 4, 4))
    ints = ctx.empty((2, 4, 4), np.int32)
    try:
        with ctx.recorder() as rec:
            with pytest.raises(ValueError, match=r"fade=1\.0"):
                w.record(rec, ints, img, fade=1.0)
            with pytest.raises(ValueError, match=r"panels.shape=\(3, 4, 4\)"):
                w.record(rec, wrong, img)
            with pytest.raises(TypeError, match="int32"):
                w.record(rec, ints, img)
            with pytest.raises(TypeError, match="DeviceArray"):
                w.record(rec, np.zeros((2, 4, 4), np.float32), img)
            with pytest.raises(RuntimeError, match="inside a recording"):
                render_image(np.zeros((4, 4), np.float32))
        with pytest.raises(ValueError, match="p=2"):
            w.panel_rect(2)
        with pytest.raises(ValueError, match="maxImageDimension2D"):
            ImageWriter(ctx, 1, 4, 4, scale=10 ** 6)
    finally:
        ints.close(), wrong.close(), img.close(), w.close()


@pytest.mark.parametrize("spatial,p", [((54, 81), 3), ((100, 60), 2), ((96,), 2)])
def test_sheet_pictures_of_any_size(ctx, spatial, p):
    """Sheets and pictures follow SPEC 1 for any size (issue 11): a 54 x 81 band-pure field with p = 3 has
    L = 3, panels [s^(0..L), D^(0..L-1)] equal to the reference, a picture of every panel."""
    from vkbands import init as I, reference as R
    from vkbands.render import SheetRenderer
    L = R.levels(spatial, p)
    x = I.band_pure(spatial, p, 1, seed=4)
    with SheetRenderer(spatial, p, ctx=ctx) as r:
        assert r.levels == L
        img = r.render(x, vmax=float(np.abs(x).max()))
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 4
        panels = r.panels.numpy()
    assert panels.shape == (2 * L + 1,) + (spatial if len(spatial) == 2 else (1,) + spatial)
    want = [R.cumulative(x, p, l) for l in range(L + 1)] + [R.detail(x, p, l, leaf=True) for l in range(L)]
    np.testing.assert_allclose(panels.reshape((2 * L + 1,) + spatial), np.stack(want), atol=1e-5)
    assert np.abs(panels[L + 1 + 1]).max() > 0.1 and np.abs(panels[L + 1]).max() < 1e-5   # energy in D^(1) only
