"""The Inception-v3 network that FID, KID and the Inception Score are computed with, and the loading of its weights.

This is the network of TensorFlow's original FID code (the 2015-12-05 ImageNet graph), in the weights layout that
pytorch-fid publishes as ``pt_inception-2015-12-05-6726825d.pth`` and torch-fidelity uses under another name. It is
defined here rather than taken from torchvision because it differs from torchvision's ImageNet Inception-v3 in ways
that change FID values:

* the average pools of the pool branches in the A, C and E blocks leave the zero padding out of the mean
  (``count_include_pad=False``), as TensorFlow's pooling does;
* the pool branch of the last E block (Mixed_7c) uses max pooling, not average pooling;
* the classifier has 1008 outputs and there is no auxiliary classifier;
* the input is resized to 299x299 with TensorFlow 1.x's ``resize_bilinear`` (``align_corners=False``), which samples
  at ``dst * in/out`` with no half-pixel offset, and scaled with ``(x - 128) / 128``, as torch-fidelity does to
  reproduce the TensorFlow code.

Weights are looked up in this order: an explicit path (``--fid-weights``), the environment variable
INTROVAE_FID_WEIGHTS, the torch hub cache (where pytorch-fid and torch-fidelity leave the file); failing that, and
unless INTROVAE_OFFLINE is set, they are downloaded into the torch hub cache. Files are read with
``torch.load(weights_only=True)``, so nothing in them is unpickled as an arbitrary object.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import uuid
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError

__all__ = [
    "FIDInceptionV3",
    "INPUT_SIZE",
    "OFFLINE_ENV",
    "WEIGHTS_ENV",
    "WEIGHTS_FILENAME",
    "WEIGHTS_SHA256_PREFIX",
    "WEIGHTS_URL",
    "WeightsMissing",
    "find_weights",
    "hub_weights_path",
    "inception_features",
    "load_inception",
    "resize_bilinear_tf1",
]

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILENAME
WEIGHTS_ENV = "INTROVAE_FID_WEIGHTS"
OFFLINE_ENV = "INTROVAE_OFFLINE"
# torch hub's naming convention: the suffix of the file name is the start of the file's sha256.
WEIGHTS_SHA256_PREFIX = "6726825d"

INPUT_SIZE = 299
POOL_DIM = 2048
NUM_LOGITS = 1008
_DOWNLOAD_TIMEOUT_S = 30
_NUM_BATCHES_TRACKED = "num_batches_tracked"


# ---------------------------------------------------------------------------------------------- resizing


def _tf1_sample_points(in_size: int, out_size: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Lower and upper source indices and the interpolation weight of each output position along one axis.

    The arithmetic is float32 as in TensorFlow's kernel (scale = in/out as a float32 division, source = dst * scale),
    so that the weights are TensorFlow's own rather than double-precision approximations of them.
    """
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    lower = src.floor()
    weight = src - lower
    lower_idx = lower.long().clamp_(0, in_size - 1)
    # When src is a whole number the weight is 0 and the upper neighbour does not count, so lower + 1 serves as well
    # as TensorFlow's ceil(src); at the last row/column it is clamped, i.e. the border pixel is repeated.
    upper_idx = (lower_idx + 1).clamp_(max=in_size - 1)
    return lower_idx.to(device), upper_idx.to(device), weight.to(device)


def resize_bilinear_tf1(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize float images (N, C, H, W) to `size` = (height, width) like TensorFlow 1.x's
    ``tf.image.resize_bilinear(align_corners=False)``.

    Output pixel (i, j) samples the input at (i * H/height, j * W/width): there is no half-pixel offset, unlike
    ``F.interpolate(mode="bilinear", align_corners=False)``, and the neighbours are clamped at the bottom/right border.
    Downscaling by a whole factor therefore picks every k-th pixel instead of averaging.
    """
    if x.dim() != 4 or not torch.is_floating_point(x):
        raise ValueError(f"resize_bilinear_tf1 expects a float tensor (N, C, H, W), "
                         f"got {x.dtype} of shape {tuple(x.shape)}")
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"resize_bilinear_tf1: the output size must be positive, got {size}")
    in_h, in_w = x.shape[-2:]
    y0, y1, wy = _tf1_sample_points(in_h, out_h, x.device)
    x0, x1, wx = _tf1_sample_points(in_w, out_w, x.device)
    wx = wx.to(x.dtype)
    wy = wy.to(x.dtype)
    # Separable, in TensorFlow's order: interpolate along each input row first (its "top" and "bottom" values),
    # then between the two rows. The lerp form a + (b - a) * w is the one TensorFlow evaluates.
    left = x.index_select(3, x0)
    rows = left + (x.index_select(3, x1) - left) * wx
    top = rows.index_select(2, y0)
    return top + (rows.index_select(2, y1) - top) * wy.view(-1, 1)


# ---------------------------------------------------------------------------------------------- network


class _ConvBN(nn.Module):
    """Convolution without bias, batch normalisation (TensorFlow's epsilon 0.001) and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3_tf(x: Tensor) -> Tensor:
    # TensorFlow's SAME average pooling divides by the number of real pixels under the window, not by 9.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_3x3(x: Tensor) -> Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _reduce_pool(x: Tensor) -> Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=2)


class _BlockA(nn.Module):
    """35x35 block (Mixed_5b/c/d): 1x1, 5x5, double 3x3 and pool branches; out = 224 + pool_features channels."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = _ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_3x3_tf(x))
        return torch.cat([self.branch1x1(x), b5, b3, bp], dim=1)


class _BlockB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (Mixed_6a): strided 3x3, strided double 3x3 and max pool; 768 channels out."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, _reduce_pool(x)], dim=1)


class _BlockC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b..6e); 768 channels out."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7d = layer(b7d)
        bp = self.branch_pool(_avg_pool_3x3_tf(x))
        return torch.cat([self.branch1x1(x), b7, b7d, bp], dim=1)


class _BlockD(nn.Module):
    """Grid reduction 17x17 -> 8x8 (Mixed_7a); 1280 channels out."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([b3, b7, _reduce_pool(x)], dim=1)


class _BlockE(nn.Module):
    """8x8 block with split 1x3/3x1 convolutions (Mixed_7b, Mixed_7c); 2048 channels out.

    `max_pool` selects the pool branch's pooling: the 2015 TensorFlow graph uses max pooling in Mixed_7c, where the
    paper and torchvision use average pooling; FID values depend on reproducing it.
    """

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = _ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        t = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(t), self.branch3x3_2b(t)], dim=1)
        t = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(t), self.branch3x3dbl_3b(t)], dim=1)
        pooled = _max_pool_3x3(x) if self.max_pool else _avg_pool_3x3_tf(x)
        return torch.cat([self.branch1x1(x), b3, b3d, self.branch_pool(pooled)], dim=1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 (TensorFlow 2015-12-05 graph) with pytorch-fid's parameter names.

    ``forward`` takes uint8 images (N, C, H, W) of any size, C in {1, 3}, and returns ``{"pool": (N, 2048),
    "logits_unbiased": (N, 1008)}`` in float32: the pool3 features FID and KID use, and ``pool @ fc.weight.T``
    without the bias, the logits of the original Inception Score code. The network always runs in eval mode
    (``train()`` does not switch batch normalisation to batch statistics), so an image's features never depend on
    the other images in its batch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _BlockA(192, pool_features=32)
        self.Mixed_5c = _BlockA(256, pool_features=64)
        self.Mixed_5d = _BlockA(288, pool_features=64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, channels_7x7=128)
        self.Mixed_6c = _BlockC(768, channels_7x7=160)
        self.Mixed_6d = _BlockC(768, channels_7x7=160)
        self.Mixed_6e = _BlockC(768, channels_7x7=192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.fc = nn.Linear(POOL_DIM, NUM_LOGITS)
        # sha256 of the weights file it was loaded from (set by load_inception): identifies the features in caches.
        self.weights_sha256 = ""
        self.eval()

    def train(self, mode: bool = True) -> FIDInceptionV3:
        # A fixed feature extractor: batch statistics would make features depend on batch composition.
        return super().train(False)

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 (N, C, H, W) -> float (N, 3, 299, 299) on the network's device, scaled to [-1, 1) as TF FID does."""
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"FIDInceptionV3 expects images (N, C, H, W) with C in {{1, 3}}, got {shape}")
        if images.dtype != torch.uint8:
            raise ValueError(f"FIDInceptionV3 expects uint8 images (0..255), got {images.dtype}")
        weight = self.fc.weight
        x = images.to(device=weight.device, dtype=weight.dtype)  # still on the 0..255 scale, as TF resizes it
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = resize_bilinear_tf1(x, (INPUT_SIZE, INPUT_SIZE))
        return (x - 128) / 128

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = self.preprocess(images)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 147x147
        x = _reduce_pool(x)  # 73x73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # 71x71
        x = _reduce_pool(x)  # 35x35
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)  # 35 -> 17 at Mixed_6a, 17 -> 8 at Mixed_7a
        # pool3: TF's 8x8 VALID average pool over the 8x8 map, i.e. the global mean.
        pool = x.mean(dim=(2, 3))
        logits_unbiased = pool @ self.fc.weight.T
        return {"pool": pool.float(), "logits_unbiased": logits_unbiased.float()}


# ---------------------------------------------------------------------------------------------- weights


class WeightsMissing(UserError):
    """The FID Inception weights file is nowhere to be found and cannot be downloaded."""


def hub_weights_path() -> Path:
    """Where pytorch-fid and torch-fidelity leave the weights: ``<torch hub dir>/checkpoints/<WEIGHTS_FILENAME>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILENAME


def _existing_file(path: Path, origin: str) -> Path:
    """`path` if it is a file; otherwise a UserError that names `origin`, the option or variable that gave it."""
    if path.is_file():
        return path
    problem = "is not a file" if path.exists() else "does not exist"
    raise UserError(f"{origin} {problem}; give the path of the FID Inception weights file {WEIGHTS_FILENAME} "
                    f"(downloadable from {WEIGHTS_URL}).")


def find_weights(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The weights file to use: `path` if given, else $INTROVAE_FID_WEIGHTS if set, else the torch hub cache's copy.

    A `path` or environment variable that names no file is an error rather than a reason to look further, so that
    a typo never silently selects some other file. Returns None when neither is given and the cache has no copy.
    """
    if path is not None:
        return _existing_file(Path(path).expanduser(), f"--fid-weights {path}")
    from_env = os.environ.get(WEIGHTS_ENV)
    if from_env:
        return _existing_file(Path(from_env).expanduser(), f"{WEIGHTS_ENV}={from_env}")
    cached = hub_weights_path()
    return cached if cached.is_file() else None


def _download(dest: Path) -> Path | None:
    """Fetch WEIGHTS_URL to `dest` via a temporary file and a rename; None on any network or disk failure.

    A download whose sha256 is not the published one is discarded, so the shared hub cache never holds a bad copy.
    """
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        print(f"introvae: downloading the FID Inception weights from {WEIGHTS_URL} to {dest}", file=sys.stderr)
        digest = hashlib.sha256()
        with urllib.request.urlopen(WEIGHTS_URL, timeout=_DOWNLOAD_TIMEOUT_S) as response, open(tmp, "xb") as f:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if not digest.hexdigest().startswith(WEIGHTS_SHA256_PREFIX):
            warnings.warn(f"the file downloaded from {WEIGHTS_URL} has sha256 {digest.hexdigest()[:8]}..., not "
                          f"{WEIGHTS_SHA256_PREFIX}..., so it was discarded.", stacklevel=3)
            return None
        os.replace(tmp, dest)
        return dest
    except (OSError, ValueError, http.client.HTTPException, urllib.error.URLError):
        # URLError and timeouts are OSErrors too; they are listed for the reader. Offline use is the normal case.
        return None
    finally:
        tmp.unlink(missing_ok=True)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime as well, so a replaced file is hashed again.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _first_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _listing(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, pickle and weights_only refusals all surface as different exception types
        raise UserError(f"{path} cannot be read as a PyTorch weights file ({_first_line(error)}); give the FID "
                        f"Inception weights file {WEIGHTS_FILENAME} from {WEIGHTS_URL}.") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise UserError(f"{path} is not the FID Inception-v3 weights file: it holds a {type(obj).__name__}, not a "
                        f"state dict of tensors; download {WEIGHTS_URL}.")
    return dict(obj)


def _check_layout(path: Path, state: dict[str, Tensor], model: FIDInceptionV3) -> None:
    # num_batches_tracked is ignored on both sides: the published file may or may not carry these counters and they
    # play no part in eval mode.
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith(_NUM_BATCHES_TRACKED)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not k.endswith(_NUM_BATCHES_TRACKED)]
    wrong = [f"{k} has shape {tuple(state[k].shape)} instead of {expected[k]}"
             for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    not_float = [k for k in expected if k in state and not torch.is_floating_point(state[k])]
    problems = []
    if missing:
        problems.append(f"missing {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listing(unexpected)}")
    if wrong:
        problems.append(_listing(wrong, limit=2))
    if not_float:
        problems.append(f"non-float {_listing(not_float)}")
    if problems:
        raise UserError(f"{path} is not the FID Inception-v3 weights file: {'; '.join(problems)}; "
                        f"download {WEIGHTS_URL}.")


def load_inception(path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu",
                   download: bool = True) -> FIDInceptionV3:
    """The FID Inception-v3 with the published weights, in eval mode, without gradients, on `device`.

    The file is found by `find_weights`; if there is none, it is downloaded into the torch hub cache unless
    `download` is false or $INTROVAE_OFFLINE is set. A file whose sha256 is not the published one is loaded with a
    warning, since FID values computed with it cannot be compared with published ones.
    """
    found = find_weights(path)
    if found is None and download and not os.environ.get(OFFLINE_ENV):
        found = _download(hub_weights_path())
    if found is None:
        raise WeightsMissing(
            f"the FID Inception weights file {WEIGHTS_FILENAME} was not found and could not be downloaded (no "
            f"network, or downloads are off): download {WEIGHTS_URL} on a machine with internet, then pass "
            f"--fid-weights PATH, set {WEIGHTS_ENV}=PATH, or put it in {hub_weights_path().parent}.")

    state = _read_state_dict(found)
    model = FIDInceptionV3()
    _check_layout(found, state, model)
    weights = {k: v for k, v in state.items() if not k.endswith(_NUM_BATCHES_TRACKED)}
    # strict=False only because the counters may be absent; every other key was checked above.
    model.load_state_dict(weights, strict=False)

    digest = _file_sha256(found)
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
        warnings.warn(f"{found} (sha256 {digest[:8]}...) is not the published {WEIGHTS_FILENAME}, so FID values "
                      f"computed with it are not comparable with published ones.", stacklevel=2)
    model.weights_sha256 = digest
    model.requires_grad_(False)
    return model.to(device).eval()


@torch.no_grad()
def inception_features(model: FIDInceptionV3, images_uint8: Tensor, batch_size: int = 64) -> dict[str, Tensor]:
    """Run `model` over uint8 images (N, C, H, W) `batch_size` at a time; float32 CPU tensors {"pool": (N, 2048),
    "logits_unbiased": (N, 1008)}."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    parts: dict[str, list[Tensor]] = {"pool": [], "logits_unbiased": []}
    for start in range(0, images_uint8.shape[0], batch_size):
        out = model(images_uint8[start:start + batch_size])
        for name, chunks in parts.items():
            chunks.append(out[name].float().cpu())
    dims = {"pool": POOL_DIM, "logits_unbiased": NUM_LOGITS}
    return {name: torch.cat(chunks) if chunks else torch.empty(0, dims[name]) for name, chunks in parts.items()}
