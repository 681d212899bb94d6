"""The version of the files introvae writes, and the one reading of an older file that is still kept.

Every config.json and every safetensors file a run writes (weights, training state, code density, an exported
weights file) carries `FORMAT_VERSION`: config.json as its key "format_version", a safetensors file in its metadata
under the same key. A reader calls `check_version` first, so a file from a newer introvae is refused with one sentence
instead of failing somewhere inside. Files without the key were written before versions were stamped (version 0);
they are read like version 1, which changed nothing but the stamp.

Raise FORMAT_VERSION when a file's meaning changes, and add the reading of the older version here, with a test that
loads such a file (tests/test_formats.py). What is kept now:

* `flat_config_values`: a config.json written before the config had sections (one flat object of options). The
  docs promised that such runs still resume; tests/data/config-flat-before-sections.json is one.

What was dropped when versions were stamped (issue 30), as no shipped file needed it: weights files without their
config, checkpoints without the generator's prior statistics, training states without the objective's state or the
learning-rate scale. Such files are refused with a sentence naming the file.
"""

from __future__ import annotations

from typing import Any

from .errors import UserError

__all__ = ["FORMAT_KEY", "FORMAT_VERSION", "check_version", "flat_config_values"]

FORMAT_VERSION = 1
FORMAT_KEY = "format_version"
# The sections of a config.json (introvae.config.SECTION_ORDER); a config with none of them is the flat format.
_CONFIG_SECTIONS = ("dataset", "networks", "objective", "optim", "run")


def check_version(found: Any, source: object) -> int:
    """The format version `found` in `source` (None: written before versions, 0); UserError if it is not a version
    or is newer than this introvae reads."""
    if found is None:
        return 0
    try:
        version = int(found)
    except (TypeError, ValueError):
        raise UserError(f"{source} has a damaged {FORMAT_KEY} ({found!r}); "
                        "it may not be a file introvae wrote.") from None
    if version > FORMAT_VERSION:
        raise UserError(f"{source} was written by a newer introvae (format {version}; this one reads up to "
                        f"{FORMAT_VERSION}): upgrade introvae to read it.")
    return version


def flat_config_values(values: dict[str, Any]) -> dict[str, Any] | None:
    """The options of a config.json from before the sections (flat names, for `Config(**values)`), with the meaning
    they had then; None for a config with sections."""
    if any(isinstance(values.get(name), dict) for name in _CONFIG_SECTIONS):
        return None
    if values.get("model") == "soft-introvae" and "warmup_steps" in values:
        # Before the engine ran every objective's warm-up, soft-introvae image runs ignored warmup_steps.
        values = {**values, "warmup_steps": 0}
    return values
