"""Decoding and conversion of single images: every PIL mode, bad files, resize filter."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import bomb_png, encode, noise_png
from PIL import Image

from ganpkg.data.images import RejectedImage, convert_image, decode_bytes


def roundtrip(image: Image.Image, fmt: str, resolution: int = 32, channels: int = 1):
    """Encode to a file format, decode as prepare does, convert; returns (C×R×R, source mode)."""
    out = convert_image(decode_bytes(encode(image, fmt)), resolution, channels)
    return out.pixels, out.source_mode


def uniform(pixels: np.ndarray) -> list[int]:
    """The single value of each channel of a uniform image (fails if it is not uniform)."""
    values = []
    for channel in pixels:
        assert channel.min() == channel.max(), (channel.min(), channel.max())
        values.append(int(channel[0, 0]))
    return values


def luma(rgb: tuple[int, int, int]) -> int:
    """PIL's own RGB → L value for a colour (ITU-R 601-2)."""
    return Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0))


def palette_image(rgb: tuple[int, int, int]) -> Image.Image:
    image = Image.new("P", (16, 16), 0)
    image.putpalette(list(rgb) + [0, 0, 0] * 255)
    return image


def filled(mode: str, value, size: int = 16) -> Image.Image:
    return Image.new(mode, (size, size), value)


# (name, image, file format, expected L value, expected RGB value)
MODE_CASES = [
    ("1-white", filled("1", 1), "PNG", 255, [255, 255, 255]),
    ("1-black", filled("1", 0), "PNG", 0, [0, 0, 0]),
    ("L", filled("L", 100), "PNG", 100, [100, 100, 100]),
    ("P", palette_image((10, 200, 30)), "PNG", luma((10, 200, 30)), [10, 200, 30]),
    ("RGB", filled("RGB", (200, 100, 50)), "PNG", luma((200, 100, 50)), [200, 100, 50]),
    ("RGBA-opaque", filled("RGBA", (200, 100, 50, 255)), "PNG", luma((200, 100, 50)),
     [200, 100, 50]),
    # Half transparent over black: 200*128/255 = 100.4 → 100, and so on.
    ("RGBA-half", filled("RGBA", (200, 100, 50, 128)), "PNG", luma((100, 50, 25)),
     [100, 50, 25]),
    ("RGBA-clear", filled("RGBA", (200, 100, 50, 0)), "PNG", 0, [0, 0, 0]),
    ("LA", filled("LA", (200, 128)), "PNG", 100, [100, 100, 100]),
    ("CMYK-white", filled("CMYK", (0, 0, 0, 0)), "TIFF", 255, [255, 255, 255]),
    ("CMYK-red", filled("CMYK", (0, 255, 255, 0)), "TIFF", luma((255, 0, 0)), [255, 0, 0]),
    # 16-bit: scaled by 1/257, not clipped (PIL's convert("L") would give 255 for both).
    ("I;16-max", filled("I;16", 65535), "PNG", 255, [255, 255, 255]),
    ("I;16-mid", filled("I;16", 32896), "PNG", 128, [128, 128, 128]),
    ("I;16-tiff", filled("I;16", 257 * 40), "TIFF", 40, [40, 40, 40]),
    # Float images are taken to be in [0, 1].
    ("F-one", filled("F", 1.0), "TIFF", 255, [255, 255, 255]),
    ("F-quarter", filled("F", 0.25), "TIFF", 64, [64, 64, 64]),
    ("F-over", filled("F", 7.5), "TIFF", 255, [255, 255, 255]),
]


@pytest.mark.parametrize("name,image,fmt,grey,rgb", MODE_CASES, ids=[c[0] for c in MODE_CASES])
def test_every_pil_mode_converts_to_the_configured_channels(name, image, fmt, grey, rgb):
    pixels, mode = roundtrip(image, fmt, channels=1)
    assert mode == image.mode  # the file really carried that mode
    assert pixels.shape == (1, 32, 32) and pixels.dtype == np.uint8
    assert uniform(pixels) == [grey]
    pixels, _ = roundtrip(image, fmt, channels=3)
    assert pixels.shape == (3, 32, 32)
    assert uniform(pixels) == rgb


def test_rgb_keeps_channel_order_and_layout():
    arr = np.zeros((32, 32, 3), np.uint8)
    arr[:16, :, 0] = 255  # top half red
    arr[16:, :, 2] = 255  # bottom half blue
    pixels, _ = roundtrip(Image.fromarray(arr), "PNG", channels=3)
    assert (pixels[:, :16] == np.array([255, 0, 0])[:, None, None]).all()
    assert (pixels[:, 16:] == np.array([0, 0, 255])[:, None, None]).all()


def test_resize_is_pil_lanczos_and_small_images_are_upscaled():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)  # H=64, W=48: not square
    image = Image.fromarray(arr)
    out = convert_image(decode_bytes(encode(image)), 32, 3)
    expected = image.crop((0, 8, 48, 56)).resize((32, 32), Image.Resampling.LANCZOS)
    assert out.cropped and not out.upscaled
    assert np.array_equal(out.pixels, np.asarray(expected).transpose(2, 0, 1))

    small = convert_image(decode_bytes(noise_png(1, size=8)), 64, 1)
    assert small.upscaled and small.pixels.shape == (1, 64, 64)


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "zero-byte"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2, "not a readable image"),
        (b"plain text pretending to be a JPEG\n", "not a readable image"),
        (noise_png(3, size=64)[:300], "truncated"),
        (bomb_png(), "decompression bomb"),
        (bomb_png(9000, 9000), "decompression bomb"),  # under PIL's own limit, over ours
    ],
    ids=["zero-byte", "corrupt", "non-image", "truncated", "bomb", "bomb-below-pil-limit"],
)
def test_bad_bytes_are_rejected_with_a_reason(data, reason):
    with pytest.raises(RejectedImage) as err:
        decode_bytes(data)
    assert reason in err.value.reason


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 20, 20))  # left half black
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buf = __import__("io").BytesIO()
    image.save(buf, "JPEG", exif=exif, quality=95)
    out = convert_image(decode_bytes(buf.getvalue()), 32, 1).pixels[0]
    # Rotated to 20×40, centre-cropped to 20×20 it is split top/bottom, not left/right.
    assert abs(int(out[:, :16].mean()) - int(out[:, 16:].mean())) < 40
    assert abs(int(out[:16].mean()) - int(out[16:].mean())) > 150
