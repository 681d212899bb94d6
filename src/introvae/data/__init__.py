"""Training data for introvae: the built-in shapes set and folders of images, as uint8 image sources."""

from introvae.data.builtin import make_shapes
from introvae.data.folder import scan_folder
from introvae.data.source import DataSplit, FolderSource, ImageSource, TensorSource, open_data

__all__ = ["open_data", "DataSplit", "ImageSource", "TensorSource", "FolderSource", "make_shapes", "scan_folder"]
