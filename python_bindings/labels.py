"""Labelled pictures (SPEC section 6): titles, colour bar and a header line around a panel grid.

One composition path for every picture of panels -- files (``vkbands rollout``, :func:`render_labelled`),
the viewer's window, video frames and notebooks -- drawn on the device into one rgba8 image:

1. ``write_image.comp`` (through :class:`vkbands.image.ImageWriter` with a :class:`Frame`) draws the
   panels at an offset inside a larger image, leaves room above each panel row for its titles, and
   draws the colour bar with the same colour-map function as the panels (so the bar's colours are
   exactly the map's). The panel pixels are bit-identical to the unlabelled picture's, shifted.
2. ``labels.comp`` draws the text: glyphs of an embedded bitmap font (:data:`FONT`, the public-domain
   X11 misc-fixed 6x10, ASCII 32..126, defined once here and uploaded as a buffer), at integer scale
   ``k``. Numbers that change without re-recording (the step, the time, the ranges reduced on the
   device) are formatted by the shader itself from a small host-written values buffer or from the
   ImageWriter's range buffer, so a replayed recording always shows the current ones.

Text is laid out on the host into glyph items (``uvec4``: x, y, code, shift) and number slots
(``uvec4``: format | decimals << 8 | source << 16, index, reserved chars, multiplier bits); text after
a number on the same line moves left by the characters the number did not use.

Use :class:`LabelledWriter` (``record(rec, panels, image, caption=..., titles=..., **style)`` inside a
recording, ``set_values(step, time, slot)`` before each submission) or the one-shot
:func:`render_labelled`. :class:`Caption` describes the run (system, shape, p, L, member, batch,
parameters); :func:`sheet_titles` names the sheet panels.
"""
from __future__ import annotations

import builtins
import math
from dataclasses import dataclass, field

import numpy as np

from vkbands.engine import DeviceArray, current, default_context

from . import reference as R
from ._checks import option_int
from ._owner import Owner
from .image import DEFAULT_EPS, DEFAULT_TAU, GAP, ImageWriter, _default_cols, _panels_shape, _scale, layout

__all__ = ["FONT", "FONT_W", "FONT_H", "Num", "Frame", "Caption", "LabelledWriter", "render_labelled", "text_image",
           "sheet_titles", "format_number", "text_scale", "TEXT_COLOUR", "labelled_frame"]

FONT_W, FONT_H = 6, 10       # glyph cell (spacing included), pixels at scale 1
TEXT_COLOUR = (230, 230, 230, 255)
N_VALUES = 4                 # host-written values per slot: [step (uint), time (float bits), 0, 0]

# X11 misc-fixed 6x10 (public domain), ASCII 32..126: 10 rows of 6 bits per glyph, bit 5 = left column.
_FONT_HEX = """
    00000000000000000000 00080808080800080000 00141414000000000000 0014143e143e14140000 00081c281c0a1c080000 00122a1408142a240000
    00102828102a241a0000 00080808000000000000 00040810101008040000 00100804040408100000 000022143e1422000000 000008083e0808000000
    0000000000000c081000 000000003e0000000000 000000000000081c0800 00020204081020200000 00081422222214080000 000818280808083e0000
    001c22020c10203e0000 003e02040c02221c0000 00040c14243e04040000 003e202c3202221c0000 000c10202c32221c0000 003e0204040810100000
    001c22221c22221c0000 001c22261a0204180000 0000081c0800081c0800 0000081c08000c081000 00020408100804020000 0000003e003e00000000
    00100804020408100000 001c2204080800080000 001c22262a2c201c0000 00081422223e22220000 003c12121c12123c0000 001c22202020221c0000
    003c12121212123c0000 003e20203c20203e0000 003e20203c2020200000 001c22202026221c0000 002222223e2222220000 001c08080808081c0000
    000e0404040424180000 00222428302824220000 002020202020203e0000 002222362a2222220000 002222322a2622220000 001c22222222221c0000
    003c22223c2020200000 001c222222222a1c0200 003c22223c2824220000 001c22201c02221c0000 003e0808080808080000 002222222222221c0000
    00222222141414080000 002222222a2a36220000 00222214081422220000 00222214080808080000 003e02040810203e0000 001c10101010101c0000
    00202010080402020000 001c04040404041c0000 00081422000000000000 00000000000000003e00 08040000000000000000 0000001c021e221e0000
    0020202c3222322c0000 0000001c2220221c0000 0002021a2622261a0000 0000001c223e201c0000 000c12103c1010100000 0000001e22221e02221c
    0020202c322222220000 000800180808081c0000 0002000602020212120c 00202022243824220000 001808080808081c0000 000000342a2a2a220000
    0000002c322222220000 0000001c2222221c0000 0000002c3222322c2020 0000001a2622261a0202 0000002c322020200000 0000001c201c023c0000
    0010103c1010120c0000 000000222222261a0000 00000022221414080000 00000022222a2a140000 00000022140814220000 0000002222261a02221c
    0000003e0408103e0000 00060804180408060000 00080808080808080000 00180408060804180000 00122a24000000000000
"""
FONT = np.array([[int(g[2 * r:2 * r + 2], 16) for r in range(FONT_H)] for g in _FONT_HEX.split()],
                np.uint32)   # (95, 10)

FMT_INT, FMT_SCI, FMT_FIX = 0, 1, 2
SRC_VALUES, SRC_SCALE = 0, 1
ALIGN_LEFT, ALIGN_RIGHT, ALIGN_CENTRE = 0, 1, 2
_NUMBER_BIT = 0x80000000


@dataclass(frozen=True)
class Num:
    """A number formatted on the device: ``source`` SRC_VALUES (the host-written values, uint for
    FMT_INT, float bits otherwise) or SRC_SCALE (the ImageWriter's range buffer: max|x| per panel or
    of the frame) at ``index``, times ``mult``; ``fmt`` FMT_INT (``%d``), FMT_SCI (``%.{decimals}e``)
    or FMT_FIX (``%.{decimals}f``, SCI beyond 4e9 / 10**decimals); ``align`` within its reserved
    width (numbers that end a run align left)."""
    source: int
    index: int
    fmt: int = FMT_SCI
    decimals: int = 2
    mult: float = 1.0
    align: int = ALIGN_LEFT

    @property
    def width(self):
        return {FMT_INT: 10, FMT_SCI: 7 + self.decimals, FMT_FIX: 8 + self.decimals}[self.fmt]


def format_number(value, fmt=FMT_SCI, decimals=2) -> str:
    """What ``labels.comp`` prints for ``value`` (float32 maths aside): Python's ``%d`` / ``%.Ne`` /
    ``%.Nf`` (no ``-`` on a number that rounds to zero in FMT_FIX; FMT_FIX of 4e9 / 10**N or more as
    FMT_SCI; subnormal float32 values as 0). The device computes in float32: a value within round-off of a
    rounding tie may print its last digit differently."""
    if fmt == FMT_INT:
        return str(int(value))
    v = float(np.float32(value))
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    if abs(v) < 1.17549435e-38:
        v = 0.0                               # subnormals print as 0 (as on the device)
    if fmt == FMT_FIX and abs(v) * 10 ** decimals < 4e9:
        s = f"{v:.{decimals}f}"
        return s[1:] if s.startswith("-") and not s.strip("-0.") else s
    return f"{v:.{decimals}e}"


# ----------------------------------------------------------------------------- captions and titles
@dataclass
class Caption:
    """What the header line says about the run: ``system``, ``spatial`` shape, ``arity`` p, ``levels``
    L, ``member`` of ``batch``, ``params`` (name -> value; ``dt`` also gives the time t = step * dt),
    ``extra`` (more name -> value, e.g. init, seed), ``observed`` (the field pictured, when a member
    has several). ``step=True`` shows the step (and time) from the values buffer."""
    system: str = ""
    spatial: tuple = ()
    arity: int | None = None
    levels: int | None = None
    member: int = 0
    batch: int = 1
    params: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    observed: str | None = None
    step: bool = True

    @property
    def dt(self):
        dt = self.params.get("dt")
        return float(dt) if isinstance(dt, (int, float)) and not isinstance(dt, bool) else None

    def lines(self):
        """The header as lines of segments (str and :class:`Num`); the first holds the step and time."""
        head = [self.system] if self.system else []
        if self.spatial:
            head.append("x".join(map(str, self.spatial)))
        if self.arity is not None:
            head.append(f"p={self.arity}")
        if self.levels is not None:
            head.append(f"L={self.levels}")
        first = ["  ".join(head + [f"member {self.member} of {self.batch}"]
                           + ([f"(bands of {self.observed})"] if self.observed else []))]
        if self.step:
            first += ["  step ", Num(SRC_VALUES, 0, FMT_INT)]
            if self.dt is not None:
                d = int(min(3, max(0, -math.floor(math.log10(self.dt))))) if self.dt > 0 else 3
                first += ["  t=", Num(SRC_VALUES, 1, FMT_FIX, d)]
        words = [f"{k}={_short(v)}" for k, v in {**self.params, **self.extra}.items() if v is not None]
        return [first] + ([[w] for w in words] if words else [])


def _short(v):
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple, np.ndarray)):
        vals = list(np.asarray(v).reshape(-1))
        s = ",".join(f"{float(x):.3g}" for x in vals[:6])
        return f"[{s}{',...' if len(vals) > 6 else ''}]"
    return str(v)


def sheet_titles(ids, levels, arity, dims):
    """Titles of the sheet panels ``ids`` (indices into ``[s^0..s^L, D^0..D^{L-1}]``): the band and
    its scale in leaves (the block it is constant on: ``p**l`` leaves, ``p**l x p**l`` in 2-D)."""
    def blocks(l):
        n = arity ** l
        return (f"{n} leaf" if n == 1 else f"{n} leaves") if dims == 1 else f"{n}x{n}"
    out = []
    for i in ids:
        if i <= levels:
            out.append(f"s^({i}) coarse {blocks(i)}" if i == levels and levels > 0 else f"s^({i}) {blocks(i)}")
        else:
            l = i - levels - 1
            out.append(f"D^({l}) {blocks(l)}")
    return out


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Frame:
    """Where the panel grid and the colour bar sit in a labelled picture (pixels): image
    ``height`` x ``width``; the grid's origin ``(oy, ox)``; ``pad_top`` pixels of title space above
    each panel row (inside the row pitch); the colour bar ``bar = (y, x, h, w)`` (w = 0: none)."""
    height: int
    width: int
    oy: int = 0
    ox: int = 0
    pad_top: int = 0
    bar: tuple = (0, 0, 0, 0)


def text_scale(grid_width, panel_width):
    """Glyph scale: 2 on large pictures (12 x 20 pixel glyphs), else 1 (6 x 10)."""
    return 2 if grid_width >= 720 and panel_width >= 168 else 1


def _wrap(lines, max_chars, sep="  "):
    """Join the one-word lines after the first into lines of at most ``max_chars`` characters."""
    first, words = lines[0], [w[0] for w in lines[1:]]
    out, cur = [first], ""
    for w in words:
        if cur and len(cur) + len(sep) + len(w) > max_chars:
            out.append([cur])
            cur = ""
        cur = f"{cur}{sep}{w}" if cur else w
    if cur:
        out.append([cur])
    return out


def _seg_len(seg):
    return seg.width if isinstance(seg, Num) else len(seg)


class _Glyphs:
    """Glyph items and number slots being laid out."""

    def __init__(self, k):
        self.k, self.items, self.nums = k, [], []

    def run(self, y, x, segments, align=ALIGN_LEFT):
        """One line of segments starting at x (ALIGN_RIGHT / ALIGN_CENTRE: ending / centred at x, for
        literal text and single numbers)."""
        cw = FONT_W * self.k
        if align != ALIGN_LEFT and len(segments) == 1 and not isinstance(segments[0], Num):
            n = len(segments[0])
            x = x - n * cw if align == ALIGN_RIGHT else x - (n * cw) // 2
        elif align != ALIGN_LEFT and len(segments) == 1:
            n = segments[0].width
            x = x - n * cw if align == ALIGN_RIGHT else x - (n * cw) // 2
        first, count = len(self.nums), 0
        for seg in segments:
            if isinstance(seg, Num):
                j = len(self.nums)
                a = align if len(segments) == 1 else ALIGN_LEFT
                self.nums.append((seg.fmt | (seg.decimals << 8) | (seg.source << 16), seg.index, seg.width,
                                  int(np.float32(seg.mult).view(np.uint32))))
                for pos in range(seg.width):
                    self._item(x + pos * cw, y, _NUMBER_BIT | (j << 8) | pos, first, count, a)
                x += seg.width * cw
                count += 1
            else:
                for ch in seg:
                    c = ord(ch)
                    if not 32 <= c <= 126:
                        c = ord("?")
                    if c != 32:
                        self._item(x, y, c, first, count, ALIGN_LEFT)
                    x += cw

    def _item(self, x, y, code, first, count, align):
        if x < 0 or y < 0:
            return
        self.items.append((x, y, code, first | (count << 16) | (align << 30)))

    def arrays(self):
        items = np.array(self.items or [(0, 0, 32, 0)], np.uint32).reshape(-1, 4)
        nums = np.array(self.nums or [(0, 0, 0, 0)], np.uint32).reshape(-1, 4)
        return items, nums


def _bar_ticks(cmap, range, vmin, vmax, tau, eps, per_panel):
    """``[(u in [0, 1], label segment)]`` of the colour bar and its caption."""
    fixed = range == "fixed"
    lo, hi = R.PICTURE_DEFAULT_LIMITS[cmap]
    vmin = lo if vmin is None else vmin
    vmax = hi if vmax is None else vmax
    centre, half = (vmin + vmax) / 2.0, (vmax - vmin) / 2.0

    def at(rel, fmt_rel=None):
        """The label of the value centre + rel * half (a device number for ranges reduced on the device)."""
        if fixed:
            return format_number(centre + rel * half)
        if per_panel:
            return fmt_rel if fmt_rel is not None else (f"{rel:+g}" if rel else "0")
        return Num(SRC_SCALE, 0, FMT_SCI, 2, rel) if rel else "0"

    if cmap == "ternary":
        ticks = [(1 / 3, at(-tau, f"-{tau:g}")), (2 / 3, at(tau, f"+{tau:g}"))]
    elif cmap == "log":
        inner = [r for r in (0.1, 0.01) if r > eps]
        ticks = [(0.0, at(-1.0)), (0.5, at(0.0)), (1.0, at(1.0))]
        for r in inner:
            u = float(np.log1p(r / eps) / np.log1p(1 / eps))
            ticks += [(0.5 - u / 2, at(-r, f"-{r:g}")), (0.5 + u / 2, at(r, f"+{r:g}"))]
    elif cmap == "energy-height":
        decades = math.log10(1.0 / eps)
        n = int(round(decades)) if abs(decades - round(decades)) < 1e-9 and 1 <= round(decades) <= 6 else 1
        ticks = []
        for i in builtins.range(n + 1):
            h = i / n
            r = float(eps ** (1.0 - h))
            ticks.append((h, at(r, f"{r:g}") if not fixed else format_number(r * half)))
    else:  # grey, diverging
        ticks = [(0.0, at(-1.0)), (0.5, at(0.0)), (1.0, at(1.0))]
    ticks.sort(key=lambda t: t[0])
    return ticks


def _bar_caption(cmap, range, tau, eps, fade, per_panel, short=False):
    if short:
        rng = "fixed" if range == "fixed" else ("x/max|x| per band" if per_panel else "+-max|x|")
        return f"{cmap}, {rng}" + (f", fade {fade:.2f}" if fade > 0 else "")
    what = {"grey": "grey", "diverging": "diverging",
            "ternary": f"ternary (tau {tau:g})", "log": f"log (eps {eps:g})",
            "energy-height": f"energy-height (log x^2, eps {eps:g})"}[cmap]
    if range == "fixed":
        rng = "range fixed"
    elif per_panel:
        rng = "range per band (x / max|x| of each panel)"
    else:
        rng = "range +-max|x| of the frame"
    return f"colour: {what}  {rng}" + (f"  fade {fade:.2f}" if fade > 0 else "")


# ----------------------------------------------------------------------------- the device writer
def _caption_lines(caption, max_chars):
    if caption is None:
        return []
    if isinstance(caption, str):
        return [[caption[:max_chars]]]
    return _wrap(caption.lines(), max_chars)


def labelled_frame(P, H, W, cols, scale=1, gap=GAP, k=None, header_lines=None, title_lines=None, min_chars=72,
                   left_chars=0, caption=None):
    """The geometry of a labelled picture (no device work): ``(frame, k, title_lines, header_lines,
    max_chars)``; arguments as :class:`LabelledWriter`."""
    sy, sx = _scale(scale)
    gh0, gw = layout(P, H, W, cols, sx, sy, gap)
    k = text_scale(gw, W * sx) if k is None else option_int("k", k, 1)
    lh, cw, m = 12 * k, FONT_W * k, 4 * k
    if title_lines is None:
        title_lines = 1 if W * sx >= 36 * cw else 2
    title_lines = option_int("title_lines", title_lines, 0)
    rows = -(-P // cols)
    pad_top = title_lines * lh
    left = option_int("left_chars", left_chars, 0) * cw
    width = 2 * m + max(left + gw, option_int("min_chars", min_chars, 1) * cw)
    max_chars = (width - 2 * m) // cw
    if header_lines is None:
        header_lines = len(_caption_lines(caption, max_chars)) if caption is not None else 2
    header_lines = option_int("header_lines", header_lines, 1)
    oy = m + header_lines * lh + m
    grid_h = rows * (H * sy + gap + pad_top) - gap
    bar_y = oy + grid_h + m + lh
    bar_w = min(width - 2 * m - 2 * cw, 72 * cw)
    bar = (bar_y, m + cw, lh, bar_w)
    height = bar_y + lh + 2 * k + lh + m
    return Frame(height, width, oy, m + left, pad_top, bar), k, title_lines, header_lines, max_chars


class LabelledWriter(Owner):
    """Labelled pictures of P panels of H x W values (the geometry of :class:`vkbands.image.ImageWriter`:
    ``cols``, ``scale``, ``gap``) with ``title_lines`` lines of title above each panel row (default: 1
    when a panel is wide enough for its title and range on one line, else 2), a header of
    ``header_lines`` (at most; the caption is wrapped into them; default: as many as ``caption``, a
    :class:`Caption` or str, needs, else 2) and a colour bar below. ``k``: glyph scale (default
    :func:`text_scale`); ``min_chars``: the picture is at least this many characters wide;
    ``left_chars``: a left margin (row labels).

    Attributes: ``writer`` (the ImageWriter drawing panels and bar), ``height``, ``width``, ``shape``,
    ``frame`` (:class:`Frame`), ``k`` (glyph scale), ``values`` (one host-visible buffer per ``slot``).
    :meth:`panel_rect` gives each panel's pixels; they equal the unlabelled picture's exactly.
    """

    def __init__(self, ctx=None, P=1, H=1, W=1, cols=None, scale=1, gap=None, header_lines=None, title_lines=None,
                 slots=1, k=None, min_chars=72, left_chars=0, caption=None):
        self.ctx = ctx = ctx or default_context()
        gap = GAP if gap is None else gap
        P, H, W = option_int("P", P, 1), option_int("H", H, 1), option_int("W", W, 1)
        sy, sx = _scale(scale)
        cols = min(P, _default_cols(P, H) if cols is None else option_int("cols", cols, 1))
        self.min_chars, self.left_chars = min_chars, left_chars
        self.frame, self.k, self.title_lines, self.header_lines, self.max_chars = labelled_frame(
            P, H, W, cols, (sy, sx), gap, k=k, header_lines=header_lines, title_lines=title_lines,
            min_chars=min_chars, left_chars=left_chars, caption=caption)
        try:
            self.writer = self._own(ImageWriter(ctx, P, H, W, cols=cols, scale=(sy, sx), gap=gap, frame=self.frame))
            self._kernels = (ctx.kernel("label_numbers.comp"), ctx.kernel("labels.comp"))
            self.font = self._own(ctx.array(FONT.reshape(-1)))
            self.slots = option_int("slots", slots, 1)
            self.values = [self._own(ctx.empty((N_VALUES,), np.uint32, host=True)) for _ in range(self.slots)]
            for v in self.values:
                v.upload(np.zeros(N_VALUES, np.uint32))
            self._texts = {}
        except BaseException:
            self.close()
            raise

    line_height = property(lambda self: 12 * self.k)
    height = property(lambda self: self.frame.height)
    width = property(lambda self: self.frame.width)
    shape = property(lambda self: (self.frame.height, self.frame.width))
    P = property(lambda self: self.writer.P)

    def image(self):
        return self.writer.image()

    def panel_rect(self, p):
        return self.writer.panel_rect(p)

    def set_values(self, step=0, time=None, slot=0):
        """The step (and time, default step * caption dt when recorded with one) shown by recordings
        of frame slot ``slot``; write it before submitting them (the previous submission of that slot
        has finished)."""
        v = np.zeros(N_VALUES, np.uint32)
        v[0] = int(step) & 0xFFFFFFFF
        v[1] = np.float32(0.0 if time is None else time).view(np.uint32)
        self.values[int(slot) % self.slots].upload(v)

    def _layout(self, caption, titles, cmap, range, vmin, vmax, tau, eps, fade, extra):
        """Glyph items and number slots of the whole picture (host, once per configuration)."""
        g, f, k = _Glyphs(self.k), self.frame, self.k
        lh, cw, m = self.line_height, FONT_W * k, 4 * k
        wr = self.writer
        lines = self._caption_lines(caption)
        if len(lines) > self.header_lines:
            lines = lines[:self.header_lines]
        for i, segs in enumerate(lines):
            g.run(m + i * lh + k, f.ox, segs)
        per_panel = range == "per_band" and wr.P > 1
        titles = list(titles or [])
        for p in builtins.range(wr.P):
            y0, x0, _, x1 = wr.panel_rect(p)
            ty = y0 - f.pad_top + k
            title = titles[p][: max(1, (x1 - x0) // cw)] if p < len(titles) else ""
            rng = ["+-", Num(SRC_SCALE, p, FMT_SCI, 2)] if per_panel else []
            if self.title_lines == 1:
                g.run(ty, x0, [title + ("  " if title and rng else "")] + rng)
            elif self.title_lines >= 2:
                g.run(ty, x0, [title])
                if rng:
                    g.run(ty + lh, x0, rng)
        y0, x0, y1, x1 = wr.panel_rect(0)
        for i, lab in enumerate(extra.get("row_labels") or ()):       # names of panel 0's value rows
            g.run(y0 + i * wr.sy + max(0, (wr.sy - FONT_H * k) // 2), x0 - cw // 2, [lab], ALIGN_RIGHT)
        for col, lab in extra.get("col_ticks") or ():                 # labels above panel 0's columns
            x = min(max(x0 + col * wr.sx + wr.sx // 2, x0 + len(lab) * cw // 2), x1 - len(lab) * cw // 2)
            g.run(y0 - f.pad_top + k, x, [lab], ALIGN_CENTRE)
        # the first empty grid cell (2-D): what the rows are
        if wr.P % wr.cols and wr.H > 1 and titles:
            p = wr.P
            y0 = (p // wr.cols) * (wr.H * wr.sy + wr.gap + f.pad_top) + f.oy
            x0 = (p % wr.cols) * (wr.W * wr.sx + wr.gap) + f.ox
            n = (wr.W * wr.sx) // cw
            notes = _wrap([[""], ["row 1:"], ["s^(l),"], ["block"], ["means"], ["over"], ["p^l"], ["leaves;"],
                           ["row 2:"], ["D^(l)"], ["="], ["s^(l)"], ["-"], ["s^(l+1)"], ["(none"], ["below"], ["the"],
                           ["coarse"], ["band)"]], n, sep=" ")[1:]
            for i, (t,) in enumerate(notes):
                if n >= 12 and (i + 1) * lh <= wr.H * wr.sy + f.pad_top:
                    g.run(y0 + i * lh + k, x0, [t[:n]])
        by, bx, bh, bw = f.bar
        bar_caption = extra.get("bar_caption") or _bar_caption(cmap, range, tau, eps, fade, per_panel)
        if len(bar_caption) > self.max_chars and not extra.get("bar_caption"):
            bar_caption = _bar_caption(cmap, range, tau, eps, fade, per_panel, short=True)
        g.run(by - lh + k, m, [bar_caption[: self.max_chars]])
        ticks = extra.get("bar_ticks") or _bar_ticks(cmap, range, vmin, vmax, tau, eps, per_panel)
        last_end = -1
        for i, (u, lab) in enumerate(ticks):
            x = bx + int(round(u * bw))
            n = _seg_len(lab)
            align = ALIGN_LEFT if u <= 0 else ALIGN_RIGHT if u >= 1 else ALIGN_CENTRE
            start = x if align == ALIGN_LEFT else x - n * cw if align == ALIGN_RIGHT else x - n * cw // 2
            if start <= last_end + cw and 0 < u < 1:
                continue                        # too close to the previous label
            g.run(by + bh + 2 * k, x, [lab], align)
            last_end = start + n * cw
        return g.arrays()

    def _caption_lines(self, caption):
        return _caption_lines(caption, self.max_chars)

    def _text(self, key, build):
        t = self._texts.get(key)
        if t is None:
            items, nums = build()
            t = self._texts[key] = (self._own(self.ctx.array(items)), self._own(self.ctx.array(nums)),
                                    self._own(self.ctx.empty((len(nums) * (_MAXC + 1),), np.uint32)), len(items))
        return t

    def record(self, rec, panels, image, caption=None, titles=(), cmap="diverging", range="fixed", vmin=None,
               vmax=None, tau=None, eps=None, fade=0.0, reset=False, slot=0, row_labels=None, col_ticks=None,
               bar_caption=None, bar_ticks=None):
        """Record the labelled picture of ``panels`` into ``image`` (this layout's size): the panels and
        the colour bar (ImageWriter), then the text. ``caption`` (:class:`Caption`, a str, or None),
        ``titles`` (one string per panel), the style as :meth:`ImageWriter.record`; ``slot``: whose
        values buffer the step and time come from (:meth:`set_values`). For one-panel plots (a band x
        time image): ``row_labels`` (names of panel 0's rows, in the left margin: ``left_chars``),
        ``col_ticks`` ([(column, text)] above it), ``bar_caption`` and ``bar_ticks`` ([(u, text)])
        replace the colour bar's own."""
        tau = DEFAULT_TAU if tau is None else tau
        eps = DEFAULT_EPS if eps is None else eps
        wr = self.writer
        wr.record(rec, panels, image, cmap=cmap, range=range, vmin=vmin, vmax=vmax, tau=tau, eps=eps, fade=fade,
                  reset=reset)
        extra = dict(row_labels=row_labels, col_ticks=col_ticks, bar_caption=bar_caption, bar_ticks=bar_ticks)
        key = (repr(caption), tuple(titles), cmap, range, vmin, vmax, tau, eps, round(float(fade), 4), repr(extra))
        items, nums, chars, n = self._text(key, lambda: self._layout(caption, titles, cmap, range, vmin, vmax, tau,
                                                              eps, fade, extra))
        _record_text(rec, self._kernels, self.font, items, nums, chars, n, self.values[int(slot) % self.slots],
                     wr.scale_buffer(range), image, self.k)
        return image

    def __repr__(self):
        return f"<vkbands.labels.LabelledWriter {self.writer!r} k={self.k} -> {self.height}x{self.width}>"


def render_labelled(panels, caption=None, titles=(), step=0, time=None, cmap="diverging", range="fixed",
                    vmin=None, vmax=None, scale=1, cols=None, gap=None, tau=None, eps=None, ctx=None,
                    **layout) -> np.ndarray:
    """The labelled picture of ``panels`` ((P, H, W), (H, W) or (N,); NumPy or DeviceArray) as an
    ``(H', W', 4) uint8`` array, rendered on the device (see :class:`LabelledWriter`)."""
    if current() is not None:
        raise RuntimeError("render_labelled reads the picture back; use LabelledWriter.record inside a recording")
    is_dev = isinstance(panels, DeviceArray)
    shape = tuple(panels.shape) if is_dev else np.shape(panels)
    P, H, W = _panels_shape(shape)
    ctx = ctx or (panels.ctx if is_dev else default_context())
    temps = []
    try:
        x = panels if is_dev else ctx.array(np.asarray(panels, np.float32))
        if not is_dev:
            temps.append(x)
        lw = LabelledWriter(ctx, P, H, W, cols=cols, scale=scale, gap=gap, **layout)
        temps.append(lw)
        img = lw.image()
        temps.append(img)
        if time is None and caption is not None and caption.dt is not None:
            time = step * caption.dt
        lw.set_values(step, time)
        with ctx.recorder() as rec:
            lw.record(rec, x.reshape(P, H, W), img, caption=caption, titles=titles, cmap=cmap, range=range,
                      vmin=vmin, vmax=vmax, tau=tau, eps=eps)
        return img.numpy()
    finally:
        for t in reversed(temps):
            t.close()


_MAXC = 24      # characters per formatted number (label_numbers.comp)


def _record_text(rec, kernels, font, items, nums, chars, n_items, values, scale, image, k):
    """Record the two text passes: the numbers formatted into ``chars``, then the glyphs (one
    invocation per glyph row)."""
    kn, kg = kernels
    n_nums = int(nums.shape[0])
    rec.dispatch(kn, (n_nums, 1, 1), nums, values, scale, chars, push=dict(n_nums=n_nums))
    total = n_items * FONT_H * k
    rec.dispatch(kg, kg.grid(-(-total // kg.local_size[0])), font, items, nums, chars, image,
                 push=dict(n_items=n_items, k=k, colour=int(np.array(TEXT_COLOUR, np.uint8).view(np.uint32)[0])))


def text_image(runs, height, width, values=(), scale_values=(), k=1, ctx=None) -> np.ndarray:
    """Text alone, drawn by ``labels.comp`` on a BACKGROUND image of ``height`` x ``width``: ``runs``
    ``[(y, x, segments)]`` or ``[(y, x, segments, align)]`` (segments: str and :class:`Num`);
    ``values`` the host values (ints for FMT_INT slots, floats otherwise: list of (index, value));
    ``scale_values`` the floats a SRC_SCALE number reads. For tests and notebooks."""
    from .image import BACKGROUND
    ctx = ctx or default_context()
    g = _Glyphs(option_int("k", k, 1))
    for run in runs:
        g.run(*run)
    items, nums = g.arrays()
    v = np.zeros(max(N_VALUES, len(values)), np.uint32)
    for i, val in enumerate(values):
        v[i] = np.float32(val).view(np.uint32) if isinstance(val, float) else int(val)
    s = np.asarray(list(scale_values) or [0.0], np.float32)
    kernels = (ctx.kernel("label_numbers.comp"), ctx.kernel("labels.comp"))
    arrays = [ctx.array(FONT.reshape(-1)), ctx.array(items), ctx.array(nums), ctx.array(v), ctx.array(s),
              ctx.empty((len(nums) * (_MAXC + 1),), np.uint32)]
    img = ctx.image(height, width, "rgba8")
    try:
        with ctx.recorder() as rec:
            rec.clear(img, tuple(c / 255.0 for c in BACKGROUND))
            font, it, nu, va, sc, chars = arrays
            _record_text(rec, kernels, font, it, nu, chars, len(items), va, sc, img, g.k)
        return img.numpy()
    finally:
        img.close()
        for a in arrays:
            a.close()
