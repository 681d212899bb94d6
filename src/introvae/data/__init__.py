"""Training data for introvae: the built-in shapes set, folders of images, LMDB databases and .npy/.npz arrays,
verified once when opened and served as uint8 image sources."""

from introvae.data.builtin import make_shapes
from introvae.data.folder import scan_folder
from introvae.data.scan import ScanReport
from introvae.data.source import (
    DataSplit,
    DecodingSource,
    FolderSource,
    ImageSource,
    TensorSource,
    check_data,
    open_data,
)

__all__ = [
    "open_data",
    "check_data",
    "DataSplit",
    "ScanReport",
    "ImageSource",
    "TensorSource",
    "DecodingSource",
    "FolderSource",
    "make_shapes",
    "scan_folder",
]
