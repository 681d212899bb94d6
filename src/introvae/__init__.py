"""introvae: introspective variational autoencoders (Huang et al., NeurIPS 2018) and their relatives.

    import introvae
    run_dir = introvae.train(introvae.Config(data="builtin", steps=2000), out="runs/shapes")
    model = introvae.Model.load(run_dir)
    images = model.sample(16, seed=0)            # float in [0, 1], (16, C, S, S)
    recs = model.reconstruct(images)
"""

from .calibrate import Calibration, calibrate
from .config import PRESETS, Config, from_preset
from .errors import DataError, UserError
from .model import Model
from .train import train

__version__ = "0.1.0"

__all__ = ["Calibration", "Config", "DataError", "Model", "PRESETS", "UserError", "calibrate", "from_preset", "train"]
