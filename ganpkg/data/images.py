"""Decode one image file and turn it into a uint8 C×R×R array: mode conversion, crop, resize.

Every PIL mode is mapped to 8 bits explicitly instead of trusting ``Image.convert``, because
``convert("L")`` clips 16-bit (``I;16``) and float (``F``) images to 255 instead of scaling them,
which would silently turn a 16-bit scan or a float TIFF into a white square.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

# PIL's Lanczos is antialiased (its kernel widens with the scale factor when downsampling).
# clean-fid shows that non-antialiased resizers (OpenCV, torch bilinear) shift FID, so every
# path through prepare uses exactly this filter, and the manifest records it.
RESIZE_FILTER = Image.Resampling.LANCZOS
RESIZE_FILTER_NAME = "PIL.Image.Resampling.LANCZOS"

# A decoded image larger than this is refused before its pixels are decoded: 8192×8192 is far
# beyond any GAN training resolution, and a tiny file that claims more is a decompression bomb.
MAX_PIXELS = 8192 * 8192

# How transparent pixels become opaque: composited over black (premultiplied alpha), so a fully
# transparent pixel is 0 whatever colour values the file happens to store under it.
ALPHA_POLICY = "composited over black"

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class RejectedImage(Exception):
    """A file that cannot become a training image; ``reason`` says why, in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Converted:
    """One prepared image and how it got there (for the manifest's counters)."""

    pixels: np.ndarray  # uint8 C×R×R
    source_mode: str
    upscaled: bool
    cropped: bool


def _describe(err: Exception) -> str:
    """'Type: message' without object addresses ("<_io.BytesIO object at 0x7f…>"): the reason
    goes into the manifest, whose md5 must not change from one run to the next."""
    message = re.sub(r"<([\w.]+) object at 0x[0-9a-fA-F]+>", r"<\1>", str(err))
    return f"{type(err).__name__}: {message}"


def decode_bytes(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Fully decode image bytes; anything unreadable raises RejectedImage with the reason."""
    if not data:
        raise RejectedImage("zero-byte file")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise RejectedImage(f"decompression bomb: {err}") from None
    except Exception as err:  # noqa: BLE001 — PIL raises many types for hostile files
        raise RejectedImage(f"not a readable image ({_describe(err)})") from None
    width, height = image.size
    # Checked on the header, before load(): the bytes of a bomb are never inflated.
    if width * height > max_pixels:
        raise RejectedImage(
            f"decompression bomb: {width}x{height} pixels exceeds the limit of {max_pixels}"
        )
    if width == 0 or height == 0:
        raise RejectedImage(f"empty image ({width}x{height})")
    try:
        image.load()  # truncated files raise here (LOAD_TRUNCATED_IMAGES stays False)
    except Exception as err:  # noqa: BLE001
        raise RejectedImage(f"corrupt or truncated image ({_describe(err)})") from None
    return image


def _composite_over_black(image: Image.Image) -> Image.Image:
    # Premultiply by alpha: colour * alpha / 255, rounded; the alpha band is then dropped.
    bands = image.mode[:-1]  # "LA" -> "L", "RGBA" -> "RGB"
    arr = np.asarray(image, dtype=np.uint16)
    alpha = arr[..., -1:]
    out = (arr[..., :-1] * alpha + 127) // 255
    out = out.astype(np.uint8)
    # uint8 H×W → "L", H×W×3 → "RGB" (fromarray infers it; its mode= argument is deprecated).
    return Image.fromarray(np.ascontiguousarray(out[..., 0] if bands == "L" else out))


def to_8bit(image: Image.Image) -> Image.Image:
    """Any PIL mode → "L" or "RGB" with 8 bits per channel, scaling instead of clipping.

    - ``1`` → L (0/255); ``L``/``RGB`` unchanged; ``P`` → via its palette (RGBA if it has
      transparency); ``LA``/``RGBA``/``PA`` → alpha composited over black; ``CMYK``/``YCbCr``/
      ``LAB``/``HSV`` → RGB by PIL's conversion;
    - ``I;16*`` and ``I`` (16-bit data) → value / 257, so 65535 → 255;
    - ``F`` (float, taken to be in [0, 1]) → value × 255, clipped.
    """
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        rgba = "transparency" in image.info
        return to_8bit(image.convert("RGBA" if rgba else "RGB"))
    if mode == "PA":
        return to_8bit(image.convert("RGBA"))
    if mode in ("LA", "RGBA"):
        return _composite_over_black(image)
    if mode.startswith("I"):
        # 16-bit PNG/TIFF arrive as I;16 (or I with 16-bit values); map the full 16-bit range.
        arr = np.asarray(image).astype(np.float64)
        out = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(out)
    if mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
        out = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(out)
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as err:
        raise RejectedImage(f"unsupported image mode {mode} ({err})") from None


def to_channels(image: Image.Image, channels: int) -> Image.Image:
    """An 8-bit L/RGB image → the configured channel count (ITU-R 601 luma for RGB → L)."""
    assert image.mode in ("L", "RGB"), image.mode
    want = "L" if channels == 1 else "RGB"
    return image if image.mode == want else image.convert(want)


def center_crop_square(image: Image.Image) -> Image.Image:
    """Crop the largest centred square (GANs train on squares; resizing would distort)."""
    w, h = image.size
    if w == h:
        return image
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def convert_image(image: Image.Image, resolution: int, channels: int) -> Converted:
    """A decoded PIL image → uint8 C×R×R (mode → channels → centre crop → Lanczos resize)."""
    source_mode = image.mode
    if image.format is not None:  # decoded from a file: camera JPEGs store rotation in EXIF
        image = ImageOps.exif_transpose(image)
    image = to_channels(to_8bit(image), channels)
    cropped = image.width != image.height
    image = center_crop_square(image)
    upscaled = image.width < resolution
    if image.width != resolution:
        image = image.resize((resolution, resolution), RESIZE_FILTER)
    # tobytes + frombuffer: a third of np.asarray's cost on small images (hot loop).
    arr = np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(resolution, resolution, -1)
    arr = arr.transpose(2, 0, 1)
    return Converted(np.ascontiguousarray(arr), source_mode, upscaled, cropped)


def array_to_image(pixels: np.ndarray) -> Image.Image:
    """A uint8 H×W (grey) or H×W×3 array → PIL image (used for datasets stored as arrays)."""
    assert pixels.dtype == np.uint8, pixels.dtype
    assert pixels.ndim == 2 or pixels.shape[-1] == 3, pixels.shape
    return Image.fromarray(pixels)
