"""MP4 video (vkbands.video.VideoWriter, `vkbands rollout --video`): exact frame counts, sizes, the
codec's tolerance against the PNG of the same step, a full queue that blocks instead of dropping,
encoder errors raised in the caller, files complete or absent and never overwritten.

Codec tolerance (H.264, crf 16, yuv420p, BT.709 limited range), stated once here, in LSB of 255:
- luma (BT.709 Y' of the RGB), decoded frame vs the PNG: mean |diff| < 1.5, 99th percentile < 8.
  Luma is kept at full resolution, so this is the encoder's own loss plus the 16-235 range's rounding;
- RGB per channel, decoded frame vs the PNG passed through yuv420p without any encoder
  (``video.yuv420_roundtrip``): mean < 2.5, 99th percentile < 40: the encoder's loss on colour,
  larger than on luma because x264 quantises chroma more coarsely; it shows on saturated edges
  (measured: 99th percentile 20 in red for the heat sheets, 35 in blue for a yellow square on blue);
- RGB per channel, decoded frame vs the PNG itself: mean < 5 (measured 3.5 in red for the heat
  sheets in the log colour map, < 1 for Gray-Scott's diverging one). The
  99th percentile is not bounded there: yuv420p keeps one chroma sample per 2 x 2 pixels, so the
  pixels along a sharp edge between two saturated colours are off by up to ~100 whatever the
  encoder (measured without one: a yellow square on blue, blue off by 56 at the 99th percentile;
  a state of random 7 x 7 colour blocks, mean errors of 13-16). That is the format's, not the codec's.
"""
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests._deps import need

need("av")

from vkbands.video import VideoWriter, even_size, read_video, to_yuv420, yuv420_roundtrip

LUMA = np.array([0.2126, 0.7152, 0.0722])


def _within_codec_tolerance(decoded, png_rgb):
    h, w = png_rgb.shape[:2]
    H, W = decoded.shape[:2]
    padded = np.empty((H, W, 3), np.uint8)             # the writer's padding: the last column / row repeated
    padded[:h, :w] = png_rgb
    padded[:h, w:] = png_rgb[:, -1:]
    padded[h:] = padded[h - 1:h]
    d, a = decoded[:h, :w].astype(float), png_rgb.astype(float)
    dl = np.abs(d @ LUMA - a @ LUMA)
    assert dl.mean() < 1.5 and np.percentile(dl, 99) < 8, (dl.mean(), np.percentile(dl, 99))
    dc = np.abs(d - yuv420_roundtrip(padded)[:h, :w])
    assert (dc.mean((0, 1)) < 2.5).all() and (np.percentile(dc, 99, axis=(0, 1)) < 40).all(), \
        (dc.mean((0, 1)), np.percentile(dc, 99, axis=(0, 1)))
    assert (np.abs(d - a).mean((0, 1)) < 5).all(), np.abs(d - a).mean((0, 1))


def _frames(n, h=61, w=97):
    """Distinct frames: a smooth background and a square that moves one pixel per frame."""
    out = []
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        a = np.zeros((h, w, 4), np.uint8)
        a[..., 0] = (xx * 255 // w).astype(np.uint8)
        a[..., 1] = (yy * 255 // h).astype(np.uint8)
        a[..., 2] = 90
        a[8:24, 4 + 2 * i:20 + 2 * i, :3] = (250, 250, 40)
        a[..., 3] = 255
        out.append(a)
    return out


def _no_temp_files(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".")]


def test_frame_count_size_and_tolerance(tmp_path):
    frames = _frames(23)                      # odd width and height: padded to 98 x 62
    path = tmp_path / "a.mp4"
    with VideoWriter(path, 24, (97, 61)) as vw:
        for f in frames:
            vw.write(f)
    assert vw.close() == path and vw.frames_written == vw.frames_encoded == 23
    assert even_size(97, 61) == vw.video_size == (98, 62)
    decoded, rate = read_video(path)
    assert len(decoded) == 23 and rate == 24.0
    assert all(d.shape == (62, 98, 3) for d in decoded)
    for i, d in enumerate(decoded):
        _within_codec_tolerance(d, frames[i][..., :3])
        # each frame is the one written at its index (none dropped, repeated or reordered)
        errs = [np.abs(d[:61, :97].astype(int) - f[..., :3]).mean() for f in frames]
        assert int(np.argmin(errs)) == i
    # the padding repeats the last column / row
    assert np.abs(decoded[0][:61, 97].astype(int) - decoded[0][:61, 96]).mean() < 3
    assert _no_temp_files(tmp_path) == []


def test_never_overwrites_and_generated_names_move_on(tmp_path):
    path = tmp_path / "taken.mp4"
    path.write_bytes(b"precious")
    vw = VideoWriter(path, 10, (16, 16))
    vw.write(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(FileExistsError):
        vw.close()
    assert path.read_bytes() == b"precious" and _no_temp_files(tmp_path) == []
    # a generated name taken meanwhile gives way to the next one
    names = iter([tmp_path / "free.mp4"])
    vw = VideoWriter(path, 10, (16, 16), another=lambda: next(names))
    vw.write(np.zeros((16, 16, 3), np.uint8))
    assert vw.close() == tmp_path / "free.mp4" and len(read_video(tmp_path / "free.mp4")[0]) == 1
    assert path.read_bytes() == b"precious"


class _GatedWriter(VideoWriter):
    """An encoder that holds its first frame until the test opens the gate (a slow encoder, made
    deterministic)."""
    gate = None

    def _encode(self, container, stream, frame):
        self.gate.wait()
        super()._encode(container, stream, frame)


def test_full_queue_blocks_the_producer_and_drops_nothing(tmp_path):
    _GatedWriter.gate = threading.Event()
    frames = _frames(12, 32, 48)
    vw = _GatedWriter(tmp_path / "slow.mp4", 30, (48, 32), queue_frames=3)
    producer = threading.Thread(target=lambda: [vw.write(f) for f in frames])
    producer.start()
    # the encoder holds frame 0, the queue holds frames 1..3, the producer waits to put frame 4
    deadline = time.monotonic() + 60
    while vw.queued < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    producer.join(0.5)
    assert vw.queued == 3 and producer.is_alive() and vw.frames_written == 4
    _GatedWriter.gate.set()
    producer.join(60)
    assert not producer.is_alive() and vw.frames_written == 12
    vw.close()
    decoded, _ = read_video(tmp_path / "slow.mp4")
    assert len(decoded) == 12
    for i, d in enumerate(decoded):
        errs = [np.abs(d[:32, :48].astype(int) - f[..., :3]).mean() for f in frames]
        assert int(np.argmin(errs)) == i


class _FailingWriter(VideoWriter):
    def _encode(self, container, stream, frame):
        if self.frames_encoded >= 2:
            raise RuntimeError("encoder broke")
        super()._encode(container, stream, frame)


def test_encoder_errors_are_raised_in_the_caller_and_leave_no_file(tmp_path):
    vw = _FailingWriter(tmp_path / "bad.mp4", 10, (16, 16), queue_frames=1)
    with pytest.raises(RuntimeError, match="encoder broke"):
        for _ in range(50):                     # a later write (or close) raises it
            vw.write(np.zeros((16, 16, 3), np.uint8))
        vw.close()
    with pytest.raises(RuntimeError, match="encoder broke"):
        vw.close()
    assert list(tmp_path.iterdir()) == []
    # a wrong frame is refused in the caller; an aborted writer leaves nothing
    with pytest.raises(ValueError, match=r"expected \(16, 16, 3 or 4\) uint8"):
        with VideoWriter(tmp_path / "x.mp4", 10, (16, 16)) as vw:
            vw.write(np.zeros((16, 17, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_rollout_video_matches_the_pngs(tmp_path, capsys, ctx):
    from vkbands import rollout_cli
    out = tmp_path / "run"
    assert rollout_cli.main(["--system", "heat", "--size", "27", "--init", "smooth", "--steps", "12",
                             "--snapshot-every", "3",
                             "--out", str(out), "--video", "--video-fps", "8"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    video = Path(summary["video"])
    assert video.parent == out and video.name.startswith("rollout-2") and video.suffix == ".mp4"
    assert f"video: {video} (5 frames at 8 fps, one per 3 steps)" in printed
    assert video.name in summary["files"] and summary["video_frames"] == 5
    decoded, rate = read_video(video)
    pngs = [np.asarray(Image.open(out / f"sheets_t{t:05d}.png").convert("RGB")) for t in (0, 3, 6, 9, 12)]
    h, w = pngs[0].shape[:2]
    assert len(decoded) == 5 and rate == 8.0 and decoded[0].shape == (h + h % 2, w + w % 2, 3)
    for i, d in enumerate(decoded):
        _within_codec_tolerance(d, pngs[i])
    # a PATH: a new file, checked before the run; --no-pictures still writes the video
    path = tmp_path / "mine.mp4"
    assert rollout_cli.main(["--system", "heat", "--size", "27", "--steps", "4", "--snapshot-every", "2",
                             "--out", str(tmp_path / "run2"), "--video", str(path), "--no-pictures", "-q"]) == 0
    assert len(read_video(path)[0]) == 3 and not list((tmp_path / "run2").glob("*.png"))
    assert rollout_cli.main(["--system", "heat", "--size", "27", "--steps", "4", "--out", str(tmp_path / "run3"),
                             "--video", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--video" in err and "already exists" in err and not (tmp_path / "run3").exists()
    assert rollout_cli.main(["--system", "heat", "--size", "27", "--steps", "4", "--out", str(tmp_path / "run4"),
                             "--video", str(tmp_path / "nofolder" / "v.mp4")]) == 2
    assert not (tmp_path / "run4").exists()


def test_rgba_frames_convert_exactly_like_their_rgb():
    """The writer queues RGBA frames as they come (no RGB copy on the caller's thread): swscale drops
    alpha in the yuv420p conversion, giving the very planes of the RGB frame."""
    a = np.random.default_rng(5).integers(0, 256, (48, 64, 4), dtype=np.uint8)
    yuv_rgba = to_yuv420(a).to_ndarray()
    assert np.array_equal(yuv_rgba, to_yuv420(np.ascontiguousarray(a[..., :3])).to_ndarray())
    a[..., 3] = 7                                   # alpha plays no part
    assert np.array_equal(yuv_rgba, to_yuv420(a).to_ndarray())
