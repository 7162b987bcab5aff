"""A matplotlib Agg canvas that draws a job's many similar charts cheaper, pixel for pixel as matplotlib does.

Two costs dominate a chart once its artists are reused (see charts.py): text, which matplotlib lays out and
rasterizes glyph by glyph with FreeType on every draw (a title alone costs ~5 ms), and the parts of a figure
that are the same in many charts of a job (the background, the time axis with its labels).

* Text: :class:`Renderer` keeps the layout of each string and the bitmap of each glyph. A glyph's bitmap
  depends on its font, size, hinting, rotation and the sub-pixel part (1/64 px) of its position; moved by whole
  pixels, FreeType rasterizes the same bitmap one pixel further. Keyed by all of these, a cached bitmap is
  the one matplotlib would render, and it is composited by the same call (``draw_text_image``). A new
  string is laid out once: its size is computed from that layout and its characters' metrics rather than by
  a second layout (``Renderer._measure``).
* Lessons: a job forked from the warm job server fills these caches with the text of its charts (tick
  labels that depend on the readings, titles), which would die with it. :func:`lesson` hands what it added
  back to the server (:func:`learn`), so that the server's next children start with it, as one long-lived
  process would. Only builtin values cross (layouts name their font by file), read by an unpickler that
  loads nothing else.
* Background: :class:`Layers` draws the figure's first artists (figure and axes patches, the time axis)
  once per key and restores them into the next chart with the same key before drawing the rest. Agg
  composites each artist onto what is already there, so restoring the pixels the first artists left and
  drawing the others over them gives the bytes of a full draw.

Both rely on private parts of matplotlib's Agg backend (``_draw_text_glyphs_and_boxes``, ``FT2Font._layout``,
``_render_glyph``, ``_get_font_height_metrics``), pinned in environment.yml. Where one is missing the
renderer draws text as matplotlib does, and tests/test_charts.py compares the pixels with a plain
``FigureCanvasAgg`` so that a change of matplotlib cannot slip through unseen.
"""

from __future__ import annotations

import io
import math
import pickle
from collections import OrderedDict

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.font_manager import fontManager, get_font
from matplotlib.ft2font import FT2Font, RenderMode

# Bounded, so that a long-lived process (the benchmark's floor) cannot grow without end: a day's charts use a
# few hundred strings and a few thousand (glyph, sub-pixel offset) pairs.
MAX_LAYOUTS, MAX_GLYPHS = 20_000, 100_000
_PRIVATE_API = all(hasattr(c, n) for c, n in ((RendererAgg, "_draw_text_glyphs_and_boxes"), (FT2Font, "_layout"),
                                                 (FT2Font, "_render_glyph"), (FT2Font, "_set_transform")))
_layouts: dict = {}
_glyphs: dict = {}
_metrics: dict = {}
_chars: dict = {}
_heights: dict = {}
_CACHES = {"layouts": (_layouts, MAX_LAYOUTS), "glyphs": (_glyphs, MAX_GLYPHS), "metrics": (_metrics, MAX_LAYOUTS),
           "chars": (_chars, MAX_LAYOUTS)}
# What this process added to the caches above since begin_lesson(): (cache name, key) pairs.
_added: list | None = None


def render_font(font: FT2Font) -> FT2Font:
    """The font of this process that renders ``font``'s glyphs: the same file, from matplotlib's font cache.

    A font reads its glyphs from its file as it renders them, and a forked process shares the parent's file
    offsets: two jobs forked from the warm server rendering with the parent's fonts at once would read each
    other's bytes (FreeType: "invalid outline"). matplotlib empties its font cache in a forked child, so the
    font found here is the child's own, while layouts (glyph indices and positions) and bitmaps made before
    the fork stay valid. A glyph's bitmap depends on the file, size, resolution and transform, all set before
    each rendering, not on which font object renders it.
    """
    if getattr(font, "face_index", 0):  # a face of a collection: kept as it is (the charts' fonts are not)
        return font
    return get_font(font.fname)


def _font_key(prop) -> tuple:
    """What FontProperties' own hash covers, as a value (the object itself is mutable)."""
    return (tuple(prop.get_family()), prop.get_slant(), prop.get_variant(), prop.get_weight(), prop.get_stretch(),
            prop.get_size_in_points(), prop.get_file(), prop.get_math_fontfamily())


def _plain(flag):
    """An enum member (matplotlib's LoadFlags, RenderMode) as its value: keys hold builtin values only."""
    return getattr(flag, "value", flag)


def _bounded(cache: dict, limit: int) -> dict:
    if len(cache) >= limit:
        cache.clear()
    return cache


def _store(name: str, key, value) -> None:
    cache, limit = _CACHES[name]
    _bounded(cache, limit)[key] = value


def _keep(name: str, key, value) -> None:
    """Store what this process computed, and record it for its lesson."""
    _store(name, key, value)
    if _added is not None:
        _added.append((name, key))


def begin_lesson() -> None:
    """Start recording what this process adds to the text caches (a job's child of the warm server)."""
    global _added
    _added = []


def lesson() -> bytes:
    """What this process added to the text caches since :func:`begin_lesson`, for :func:`learn` in the
    process it was forked from; empty when nothing was added."""
    entries = []
    for name, key in _added or ():
        value = _CACHES[name][0].get(key)
        if value is None:
            continue
        if name == "layouts":
            if any(font.face_index for font, *_ in value):
                continue  # a face of a font collection: not one get_font(file) gives back
            value = [(font.fname, *rest) for font, *rest in value]
        elif name == "glyphs":
            buffer, left, top = value
            if buffer.dtype != np.uint8:
                continue
            value = (buffer.shape, buffer.tobytes(), left, top)
        entries.append((name, key, value))
    return pickle.dumps(entries, protocol=5) if entries else b""


class _BuiltinsOnly(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"a lesson holds only builtin values, not {module}.{name}")


def learn(data: bytes) -> int:
    """Add a forked child's :func:`lesson` to this process's text caches; returns how many entries were new.

    Every key holds all a layout, bitmap or metric follows from, so an entry learned is the one this process
    would compute."""
    learned = 0
    for name, key, value in _BuiltinsOnly(io.BytesIO(data)).load():
        if key in _CACHES[name][0]:
            continue
        if name == "layouts":
            value = [(get_font(fname), *rest) for fname, *rest in value]
        elif name == "glyphs":
            shape, raw, left, top = value
            value = (np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy(), left, top)
        _store(name, key, value)
        learned += 1
    return learned


class Renderer(RendererAgg):
    """RendererAgg with cached text layout, glyph bitmaps and font height metrics."""

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath or not _PRIVATE_API:
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        flags = get_hinting_flag()
        features = mtext.get_fontfeatures() if mtext is not None else None
        language = mtext.get_language() if mtext is not None else None
        try:
            glyphs = self._layout(s, prop, flags, features, language)
        except TypeError:  # features or language given as a list: not a key, and not used by the charts
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        self._draw_text_glyphs_and_boxes(gc, x, y, angle, glyphs, [])

    def _layout(self, s, prop, flags, features, language) -> list:
        """The glyphs of ``s`` as FreeType lays them out: (font, size, glyph index, slant, extend, x, y) each."""
        key = (_font_key(prop), s, _plain(flags), features, language, self.dpi)
        glyphs = _layouts.get(key)
        if glyphs is None:
            font = self._prepare_font(prop)
            size = prop.get_size_in_points()
            items = font._layout(s, flags=flags, features=features, language=language)
            glyphs = [(item.ft_object, size, item.glyph_index, 0, 1, item.x, item.y) for item in items]
            _keep("layouts", key, glyphs)
        return glyphs

    def _draw_text_glyphs_and_boxes(self, gc, x, y, angle, glyphs, boxes):
        # The arithmetic of RendererAgg._draw_text_glyphs_and_boxes, with each rendered bitmap kept.
        if boxes or not _PRIVATE_API:
            return super()._draw_text_glyphs_and_boxes(gc, x, y, angle, glyphs, boxes)
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        flags = get_hinting_flag()
        mode = RenderMode.NORMAL if gc.get_antialiased() else RenderMode.MONO
        flags_key, mode_key = _plain(flags), _plain(mode)
        height = int(self.height)
        rotation = np.array([[cos, -sin], [sin, cos]])
        matrices: dict = {}
        for font, size, glyph_index, slant, extend, dx, dy in glyphs:
            matrix = matrices.get((slant, extend))
            if matrix is None:
                matrix = matrices[(slant, extend)] = (
                    (0x10000 * rotation @ [[extend, extend * slant], [0, 1]]).round().astype(int))
            tx = round(0x40 * (x + dx * cos - dy * sin))
            ty = round(0x40 * (self.height - y + dx * sin + dy * cos))
            key = (font.fname, font.face_index, size, self.dpi, glyph_index, flags_key, mode_key, matrix.tobytes(),
                   tx & 63, ty & 63)
            cached = _glyphs.get(key)
            if cached is None:
                font = render_font(font)
                font.set_size(size, self.dpi)
                font._set_transform(matrix, [tx, ty])
                bitmap = font._render_glyph(glyph_index, flags, mode)
                buffer = np.array(bitmap.buffer, copy=True)  # the font reuses its own buffer
                if mode is RenderMode.MONO:
                    buffer *= 0xFF
                cached = (buffer, bitmap.left - (tx >> 6), bitmap.top - (ty >> 6))
                _keep("glyphs", key, cached)
            buffer, left, top = cached
            self._renderer.draw_text_image(buffer, left + (tx >> 6), height - top - (ty >> 6) + buffer.shape[0], 0,
                                           gc)

    def get_text_width_height_descent(self, s, prop, ismath):
        # matplotlib keeps these per renderer (text._get_text_metrics_with_cache); here per process, so that
        # a forked job starts with what the warm server learned.
        if ismath or not _PRIVATE_API:
            return super().get_text_width_height_descent(s, prop, ismath)
        flags = get_hinting_flag()
        key = (_font_key(prop), s, _plain(flags), self.dpi)
        found = _metrics.get(key)
        if found is None:
            found = self._measure(s, prop, flags) or super().get_text_width_height_descent(s, prop, ismath)
            _keep("metrics", key, found)
        return found

    def _measure(self, s, prop, flags) -> tuple[float, float, float] | None:
        """What matplotlib's get_text_width_height_descent gives for ``s``, from the layout that draws it and
        the metrics of its characters alone, instead of a second layout (FT2Font.set_text: ~40 us a
        character). set_text places the glyphs of the same layout: the width is where the last glyph starts
        plus its advance, the height and descent come from the highest and lowest glyph, whose vertical
        extent does not depend on where the glyph stands. None (measured by set_text) unless every glyph is
        its character's own at zero height: no substitution, ligature or vertical offset."""
        glyphs = self._layout(s, prop, flags, None, None)  # what get_text_width_height_descent uses
        if not s or len(glyphs) != len(s):
            return None
        low = high = None
        for c, (font, _, index, _, _, x, y) in zip(s, glyphs):
            char = self._char(c, prop, flags)
            if y or char[:3] != (font.fname, font.face_index, index):
                return None
            advance, height, descent = char[3:]
            low = -descent if low is None else min(low, -descent)
            high = height - descent if high is None else max(high, height - descent)
        return (round(x * 64) + advance) / 64.0, (high - low) / 64.0, -low / 64.0

    def _char(self, c: str, prop, flags) -> tuple:
        """The glyph of character ``c`` alone (font file, face, index) and its advance, height and descent in
        1/64 px as FT2Font.set_text measures it; () when it is not one glyph at the origin."""
        key = (_font_key(prop), c, _plain(flags), self.dpi)
        found = _chars.get(key)
        if found is None:
            font = self._prepare_font(prop)
            font.set_text(c, 0.0, flags=flags)
            (advance, height), descent = font.get_width_height(), font.get_descent()
            items = font._layout(c, flags=flags)
            found = ()
            if len(items) == 1 and items[0].x == 0 and items[0].y == 0:
                glyph = items[0]
                found = (glyph.ft_object.fname, glyph.ft_object.face_index, glyph.glyph_index, advance, height,
                         descent)
            _keep("chars", key, found)
        return found

    def _get_font_height_metrics(self, prop):
        """Line metrics as matplotlib's Text._get_layout reads them from the font's tables on every layout."""
        key = (_font_key(prop), self.dpi)
        if key not in _heights:
            font = get_font(fontManager._find_fonts_by_props(prop))
            found = (None, None, None)
            for table_name, gap_key, ascent_key, descent_key in (
                    ("OS/2", "sTypoLineGap", "sTypoAscender", "sTypoDescender"),
                    ("hhea", "lineGap", "ascent", "descent")):
                table = font.get_sfnt_table(table_name)
                if table is None:
                    continue
                scale = 1 / font.get_sfnt_table("head")["unitsPerEm"] * prop.get_size_in_points() * self.dpi / 72
                found = (table[ascent_key] * scale, -table[descent_key] * scale, table[gap_key] * scale)
                break
            _heights[key] = found
        return _heights[key]


class Canvas(FigureCanvasAgg):
    """FigureCanvasAgg drawing with :class:`Renderer`."""

    def get_renderer(self):
        w, h = self.get_width_height(physical=True)
        key = w, h, self.figure.dpi
        if self._lastKey != key:
            self.renderer = Renderer(w, h, self.figure.dpi)
            self._lastKey = key
        return self.renderer


class Layers:
    """Draw ``figure`` over a kept background: what ``background`` (its first artists, in drawing order) leave.

    ``draw(key)`` leaves in the canvas what ``canvas.draw()`` would. The caller promises that the background
    artists look the same whenever they are drawn with the same key, and that they are drawn before every
    other artist (lower z-order, or the same z-order and added earlier). Kept per key, least recently used
    first out: each background is a full RGBA copy of the figure (1.6 MB for 1000x400).
    """

    def __init__(self, figure, background: list, keep: int = 32):
        self.figure, self.background, self.keep = figure, background, keep
        self.regions: OrderedDict = OrderedDict()

    def _others(self) -> list:
        figure, background = self.figure, self.background
        others = [a for a in figure.get_children() if a is not figure.patch and a not in figure.axes]
        for ax in figure.axes:
            if ax in background or any(a in background for a in ax.get_children()):
                others += [a for a in ax.get_children() if a not in background]
            else:
                others.append(ax)
        return others

    def keep_background(self, key) -> None:
        """Draw the background artists as they are now and keep their pixels as ``key``'s, unless kept already."""
        if key in self.regions:
            self.regions.move_to_end(key)
            return
        renderer = self.figure.canvas.get_renderer()
        renderer.clear()
        with _hidden(self._others()):
            self.figure.draw(renderer)
        self.regions[key] = renderer.copy_from_bbox(self.figure.bbox)
        while len(self.regions) > self.keep:
            self.regions.popitem(last=False)

    def draw(self, key) -> None:
        self.keep_background(key)
        renderer = self.figure.canvas.get_renderer()
        renderer.restore_region(self.regions[key])
        with _hidden(self.background):
            self.figure.draw(renderer)


class _hidden:
    """Make ``artists`` invisible for the block, then restore each one's own visibility."""

    def __init__(self, artists):
        self.states = [(a, a.get_visible()) for a in artists]

    def __enter__(self):
        for artist, _ in self.states:
            artist.set_visible(False)

    def __exit__(self, *exc):
        for artist, visible in self.states:
            artist.set_visible(visible)
