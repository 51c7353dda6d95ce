"""Video-codec intra baselines as raw Annex-B streams through ffmpeg: HEVC (x265) and VVC (vvenc).

The ffmpeg binary is $STIC_FFMPEG, else the one the `imageio-ffmpeg` wheel ships (it has libx265,
libvvenc and the native HEVC/VVC decoders). RGB is converted to full-range BT.601 YCbCr 4:2:0 and
back by ffmpeg with the same explicit options on both sides; odd sizes are padded by edge
replication and cropped after decoding (bits for the padding count against the codec). x265 is
told `info=0`, otherwise it writes a ~2.3 KB SEI with its settings into every stream; vvenc's
perceptual QP adaptation (QPA) is switched off, as in objective comparisons.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache

import numpy as np

from stic.baselines.base import ClassicCodec, CodecUnavailableError, Coded, pad_to_even

_TO_YUV = "scale=out_color_matrix=bt601:out_range=full:flags=bicubic+accurate_rnd+full_chroma_int"
_TO_RGB = "scale=in_color_matrix=bt601:in_range=full:flags=bicubic+accurate_rnd+full_chroma_int"


@cache
def ffmpeg_executable() -> str:
    configured = os.environ.get("STIC_FFMPEG")
    if configured:
        if not shutil.which(configured):
            raise CodecUnavailableError(
                f"STIC_FFMPEG={configured} is not an executable"
            )
        return shutil.which(configured)
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        raise CodecUnavailableError(
            "x265/VVC baselines need ffmpeg: pip install imageio-ffmpeg (or set STIC_FFMPEG)"
        ) from err


@cache
def ffmpeg_encoders() -> frozenset[str]:
    listing = subprocess.run(
        [ffmpeg_executable(), "-hide_banner", "-encoders"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return frozenset(
        line.split()[1] for line in listing.splitlines() if line.startswith(" V")
    )


def _run(args: list[str], data: bytes, what: str) -> bytes:
    result = subprocess.run(
        [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", *args],
        input=data,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(
            f"ffmpeg {what} failed: {message[-1] if message else 'no output'}"
        )
    return result.stdout


class FFmpegCodec(ClassicCodec):
    encoder: str = ""
    muxer: str = ""
    pixel_format: str = "yuv420p"
    setting_name = "qp"
    max_step = (
        4  # encodes get slow as QP falls: walk up from the lowest rate rather than leap
    )

    def check_available(self) -> None:
        if self.encoder not in ffmpeg_encoders():
            raise CodecUnavailableError(
                f"{self.name} needs an ffmpeg with {self.encoder}; {ffmpeg_executable()} lacks it "
                "(set STIC_FFMPEG to one that has it, or pip install imageio-ffmpeg)"
            )

    def encoder_args(self, qp: int) -> list[str]:
        raise NotImplementedError

    def encode(self, rgb: np.ndarray, setting) -> Coded:
        self.check_available()
        padded = pad_to_even(rgb)
        height, width = padded.shape[:2]
        args = [
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{width}x{height}",
            "-i",
            "pipe:",
            "-frames:v",
            "1",
            "-vf",
            f"{_TO_YUV},format={self.pixel_format}",
            "-color_range",
            "pc",
            *self.encoder_args(setting),
            "-f",
            self.muxer,
            "pipe:",
        ]
        data = _run(args, padded.tobytes(), f"{self.name} encode")
        return Coded(data, len(data))

    def decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        padded_w, padded_h = width + width % 2, height + height % 2
        args = [
            "-f",
            self.muxer,
            "-i",
            "pipe:",
            "-frames:v",
            "1",
            "-vf",
            f"{_TO_RGB},format=rgb24",
            "-f",
            "rawvideo",
            "pipe:",
        ]
        raw = _run(args, data, f"{self.name} decode")
        if len(raw) != padded_w * padded_h * 3:
            raise RuntimeError(
                f"{self.name} decode gave {len(raw)} bytes, expected {padded_w}x{padded_h} RGB"
            )
        return (
            np.frombuffer(raw, np.uint8)
            .reshape(padded_h, padded_w, 3)[:height, :width]
            .copy()
        )


class X265(FFmpegCodec):
    """HEVC Main, one intra frame, constant QP (51 = lowest rate), preset medium."""

    name, encoder, muxer = "x265", "libx265", "hevc"
    settings = tuple(range(51, -1, -1))

    def encoder_args(self, qp: int) -> list[str]:
        return [
            "-c:v",
            "libx265",
            "-preset",
            "medium",
            "-x265-params",
            f"qp={qp}:info=0:keyint=1:log-level=error",
        ]


class VVC(FFmpegCodec):
    """VVC Main 10, one intra frame, constant QP (63 = lowest rate), no QPA, vvenc preset "fast":
    on Kodak kodim23 "medium" gave +0.1-0.3 dB at the same rate for 2-3x the encode time, too slow
    for rate searches on 2 shared cores (`preset` can be set per instance)."""

    name, encoder, muxer, pixel_format = "vvc", "libvvenc", "vvc", "yuv420p10le"
    settings = tuple(range(63, -1, -1))

    def __init__(self, preset: str = "fast"):
        self.preset = preset

    def encoder_args(self, qp: int) -> list[str]:
        return ["-c:v", "libvvenc", "-preset", self.preset, "-qp", str(qp), "-qpa", "0"]
