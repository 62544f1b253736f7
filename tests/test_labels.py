"""Labelled pictures (vkbands.labels): the panels are exactly the unlabelled picture's, the colour bar is
the colour map (reference.colorbar, within 1 LSB, monotone), text pixels sit in the header, title and
colour-bar regions and nowhere else, numbers formatted on the device read as Python formats them,
and a replayed recording shows the step written before each submission."""
import numpy as np
import pytest

from vkbands import labels as LB
from vkbands import reference as R
from vkbands.image import BACKGROUND, render_image

TEXT = np.array(LB.TEXT_COLOUR[:3])


def _field(shape, seed=0):
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    x[-1] *= 1e-3                                   # a quiet panel
    return x


def _text_mask(img):
    return (img[..., :3] == TEXT).all(-1)


CASES = [  # (P, H, W, cols, scale, cmap, range)
    (5, 9, 9, 3, 7, "log", "per_band"),           # 2-D sheet grid with an empty cell, small panels
    (7, 27, 27, 4, 3, "diverging", "symmetric"),
    (5, 1, 96, 1, (6, 1), "energy-height", "fixed"),   # 1-D strips in one column
    (1, 20, 30, None, 4, "grey", "fixed"),
    (3, 8, 8, 3, 5, "ternary", "per_band"),
]


@pytest.mark.parametrize("P,H,W,cols,scale,cmap,rng", CASES)
def test_labelled_picture(ctx, P, H, W, cols, scale, cmap, rng):
    x = _field((P, H, W), seed=P)
    cap = LB.Caption("heat", (H, W), 3, 2, 0, 4, params=dict(alpha=0.2, dt=0.5), extra=dict(seed=1))
    titles = [f"panel {p}" for p in np.arange(P)]
    kw = dict(cmap=cmap, range=rng, vmin=-2.0 if rng == "fixed" else None, vmax=1.5 if rng == "fixed" else None)
    plain = render_image(x, scale=scale, cols=cols, **kw)
    with LB.LabelledWriter(ctx, P, H, W, cols=cols, scale=scale) as lw:
        img = lw.image()
        xs = ctx.array(x)
        lw.set_values(step=1234, time=617.0)
        with ctx.recorder() as rec:
            lw.record(rec, xs, img, caption=cap, titles=titles, **kw)
        got = img.numpy()
        img.close()
        xs.close()
        rects = [lw.panel_rect(p) for p in range(P)]
        frame, wr = lw.frame, lw.writer
    # 1. every panel is exactly the unlabelled picture's panel
    sy, sx = (scale, scale) if isinstance(scale, int) else scale
    c = cols or (1 if H == 1 else P)
    for p, (y0, x0, y1, x1) in enumerate(rects):
        py, px = (p // c) * (H * sy + 2), (p % c) * (W * sx + 2)
        assert np.array_equal(got[y0:y1, x0:x1], plain[py:py + H * sy, px:px + W * sx]), f"panel {p}"
    # 2. outside the text, the picture is the reference frame (background, panels, colour bar)
    ref, _ = R.render_panels(x, cmap, rng, kw["vmin"], kw["vmax"], cols=c, sx=sx, sy=sy, gap=2, frame=frame)
    labels = np.ones(got.shape[:2], bool)                  # the label regions: not a panel, not the bar
    for (y0, x0, y1, x1) in rects:
        labels[y0:y1, x0:x1] = False
    by, bx, bh, bw = frame.bar
    labels[by:by + bh, bx:bx + bw] = False
    text = _text_mask(got) & labels
    d = np.abs(got.astype(int) - ref.astype(int)).max(-1)
    assert d[~text].max() <= 1
    assert (ref[labels] == BACKGROUND).all()                  # the label regions are background there
    # 3. text in each label region: header lines, each panel's title, the bar caption, the tick labels
    lh = lw.line_height
    assert text[:frame.oy].sum() > 200                              # header: system, step, parameters
    for (y0, x0, y1, x1) in rects:
        assert text[y0 - frame.pad_top:y0, x0:x1].sum() > 20         # its title
    assert text[by - lh:by, :].sum() > 100                          # colour bar caption
    assert text[by + bh:by + bh + lh, :].sum() > 20                 # tick labels
    # 4. the bar is the map: equal to the reference bar within 1 LSB, and monotone along it
    bar = got[by + bh // 2, bx:bx + bw, :3].astype(int)
    ref_bar = R.to_rgba8(R.colorbar(cmap, bw))[:, :3].astype(int)
    assert np.abs(bar - ref_bar).max() <= 1
    if cmap in ("grey", "energy-height"):
        lum = bar @ np.array([0.299, 0.587, 0.114])
        assert (np.diff(lum) >= -0.6).all() and lum[-1] - lum[0] > 150
    elif cmap in ("diverging", "log"):
        blue, red = np.array([33, 102, 172]), np.array([178, 24, 43])
        left, right = bar[: bw // 2], bar[bw // 2:]
        assert (np.diff(np.abs(left - blue).sum(1)) >= -1).all()    # leaves blue towards white
        assert (np.diff(np.abs(right - red).sum(1)) <= 1).all()     # then goes to red
        assert np.abs(bar[0] - blue).max() <= 8 and np.abs(bar[-1] - red).max() <= 8
    else:  # ternary: blue, white, red thirds
        assert (bar[: bw // 4] == [33, 102, 172]).all() and (bar[-bw // 4:] == [178, 24, 43]).all()
        assert (bar[bw // 2] == 255).all()


NUMBERS = [1.0, -1.0, 0.0, 1234.5678, 9.999e-5, 3.14159e30, -2.4e-38, 1e-45, np.nan, np.inf, -np.inf, 999.6, 5e-4]


@pytest.mark.parametrize("fmt,decimals", [(LB.FMT_SCI, 2), (LB.FMT_SCI, 0), (LB.FMT_FIX, 3), (LB.FMT_FIX, 0)])
def test_numbers_formatted_on_the_device(ctx, fmt, decimals):
    """A number slot (read from the range buffer) draws the same pixels as Python's formatting of it."""
    runs = []
    for i, v in enumerate(NUMBERS):
        runs += [(12 * i, 0, [LB.Num(LB.SRC_SCALE, i, fmt, decimals)]), (12 * i, 100, [LB.format_number(v, fmt, decimals)])]
    img = LB.text_image(runs, 12 * len(NUMBERS), 200, scale_values=NUMBERS, ctx=ctx)
    for i, v in enumerate(NUMBERS):
        a, b = img[12 * i:12 * i + 12, :100], img[12 * i:12 * i + 12, 100:]
        assert _text_mask(b).sum() > 10
        assert np.array_equal(a, b), f"{v!r} -> {LB.format_number(v, fmt, decimals)!r}"


def test_text_after_a_number_follows_it_and_ints(ctx):
    """'step N  t=T': the text after a number moves left by the digits it did not use; ints to 2**32-1."""
    vals = [7, 4294967295, 123456]
    runs = [(0, 0, ["step ", LB.Num(LB.SRC_VALUES, i, LB.FMT_INT), " end"]) for i in range(1)]
    runs += [(12, 0, ["step 7 end"])]
    runs += [(24, 0, [LB.Num(LB.SRC_VALUES, 1, LB.FMT_INT)]), (24, 100, ["4294967295"])]
    runs += [(36, 100, [LB.Num(LB.SRC_VALUES, 2, LB.FMT_INT)], LB.ALIGN_RIGHT), (48, 100, ["123456"], LB.ALIGN_RIGHT)]
    runs += [(60, 100, [LB.Num(LB.SRC_VALUES, 2, LB.FMT_INT)], LB.ALIGN_CENTRE), (72, 100, ["123456"], LB.ALIGN_CENTRE)]
    img = LB.text_image(runs, 84, 200, values=vals, ctx=ctx)
    assert np.array_equal(img[0:12], img[12:24])
    assert np.array_equal(img[24:36, :100], img[24:36, 100:]) and _text_mask(img[24:36]).sum() > 50
    # a right-aligned number ends at x, as right-aligned text does; a centred one is centred there
    assert np.array_equal(img[36:48], img[48:60]) and _text_mask(img[36:48, 64:100]).sum() > 30
    assert np.array_equal(img[60:72], img[72:84]) and _text_mask(img[60:72, 82:118]).sum() > 30


def test_replay_shows_the_step_written_before_each_submission(ctx):
    """One recording replayed: the header's step and time follow set_values (no re-recording), and
    equal the picture of a fresh recording at that step."""
    x = _field((3, 9, 9))
    cap = LB.Caption("heat", (9, 9), 3, 2, params=dict(dt=0.25))
    with LB.LabelledWriter(ctx, 3, 9, 9, scale=8) as lw:
        img, xs = lw.image(), ctx.array(x)
        rec = ctx.recorder()
        lw.record(rec, xs, img, caption=cap, range="per_band")
        rec.finish()
        shots = []
        for step in (5, 123456):
            lw.set_values(step, step * 0.25)
            rec.submit()
            shots.append(img.numpy())
        rec.close()
        img.close()
        xs.close()
        hdr = slice(0, lw.frame.oy)
    assert not np.array_equal(shots[0][hdr], shots[1][hdr])
    assert np.array_equal(shots[0][lw.frame.oy:], shots[1][lw.frame.oy:])          # only the header changed
    fresh = LB.render_labelled(x, cap, (), step=123456, range="per_band", scale=8, ctx=ctx)
    assert np.array_equal(fresh, shots[1])


def test_sheet_titles_and_caption():
    assert LB.sheet_titles([0, 1, 2, 3, 4], 2, 3, 2) == ["s^(0) 1x1", "s^(1) 3x3", "s^(2) coarse 9x9", "D^(0) 1x1",
                                                         "D^(1) 3x3"]
    assert LB.sheet_titles([0, 3], 2, 3, 1) == ["s^(0) 1 leaf", "D^(0) 1 leaf"]
    lines = LB.Caption("tree", (729,), 3, 6, 2, 256, params=dict(tau=1.0, alpha=1.0)).lines()
    assert "tree  729  p=3  L=6  member 2 of 256" in lines[0][0] and ["tau=1"] in lines
    assert LB.format_number(-0.0004, LB.FMT_FIX, 2) == "0.00" and LB.format_number(3, LB.FMT_INT) == "3"
