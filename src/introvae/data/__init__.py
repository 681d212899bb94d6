"""Training data for introvae: the built-in shapes and glyphs, folders of images, LMDB databases and .npy/.npz arrays,
verified once when opened and served as uint8 image sources; and image sets to compare (`load_image_set`).

Each kind of data set is a `DataSourceKind` in the registry `DATA_SOURCES` (see `introvae.data.source`).
"""

from introvae.data.base import DataSplit, DecodingSource, ImageSource, TensorSource, cache_in_memory, evenly_spaced
from introvae.data.folder_files import list_image_files
from introvae.data.folder_source import FolderSource
from introvae.data.glyphs import glyph_labels, make_glyphs, write_glyphs
from introvae.data.imagesets import load_image_set
from introvae.data.scan import ScanReport
from introvae.data.shapes import make_shapes
from introvae.data.source import DATA_SOURCES, check_data, open_data

__all__ = [
    "open_data",
    "check_data",
    "DATA_SOURCES",
    "DataSplit",
    "ScanReport",
    "ImageSource",
    "TensorSource",
    "DecodingSource",
    "FolderSource",
    "cache_in_memory",
    "evenly_spaced",
    "make_shapes",
    "make_glyphs",
    "glyph_labels",
    "write_glyphs",
    "list_image_files",
    "load_image_set",
]
