"""The latent space as a tool: attribute vectors and edits, principal directions and traversals, looping
interpolations as animations, and out-of-distribution scores of images (introvae.latent.attribute, .traverse,
.ood). Every function takes a `Model` in eval mode; the CLI commands attribute, edit, traverse, score and
interpolate --out X.gif call these."""

from .attribute import (
    ATTRIBUTES_DIR,
    AttributeVector,
    attribute_file_name,
    attribute_position,
    attributes_folder,
    attributes_from_labels,
    compute_attribute,
    edit_images,
    load_attributes,
    run_attributes,
    write_attribute,
    write_label_attributes,
)
from .ood import (
    COMPRESSORS,
    CORRECTED_KEYS,
    DEFAULT_SCORE,
    DENSITY_KEYS,
    JOINT_STATISTICS,
    SCORE_KEYS,
    SCORE_MEANINGS,
    OODReference,
    compressed_bits_per_dim,
    corrected_scores,
    decoder_sigma,
    detection_metrics,
    fit_reference,
    fit_sigma,
    gaussian_scores,
    joint_statistics,
    joint_typicality,
    plot_score_histograms,
    reference_count,
    reference_statistics,
    score_images,
)
from .report import ScoreReport, read_reference, score_sets
from .sets import (
    DENSITY_IMAGES,
    PRIORS,
    fitted_density,
    load_named_images,
    read_labels_csv,
    set_sampler,
    training_images,
)
from .traverse import (
    ANIMATION_SUFFIXES,
    PrincipalDirections,
    axis_directions,
    interpolation_rows,
    loop_codes,
    loop_frames,
    principal_directions,
    read_animation,
    start_code,
    training_directions,
    traverse,
    write_animation,
    write_interpolation,
)

__all__ = [
    "AttributeVector", "compute_attribute", "attributes_from_labels", "edit_images", "attribute_position",
    "load_attributes", "run_attributes", "attribute_file_name", "attributes_folder", "ATTRIBUTES_DIR",
    "PrincipalDirections", "principal_directions", "axis_directions", "traverse", "loop_codes", "loop_frames",
    "interpolation_rows", "write_animation", "read_animation", "ANIMATION_SUFFIXES",
    "SCORE_KEYS", "DENSITY_KEYS", "CORRECTED_KEYS", "DEFAULT_SCORE", "SCORE_MEANINGS", "COMPRESSORS", "OODReference",
    "score_images", "gaussian_scores", "fit_sigma", "decoder_sigma", "fit_reference", "reference_statistics",
    "reference_count", "compressed_bits_per_dim", "corrected_scores", "detection_metrics", "plot_score_histograms",
    "training_images", "fitted_density", "set_sampler", "PRIORS", "DENSITY_IMAGES", "load_named_images",
    "read_labels_csv", "ScoreReport", "score_sets",
    "write_attribute", "write_label_attributes", "start_code", "training_directions", "write_interpolation",
    "read_reference", "JOINT_STATISTICS", "joint_statistics", "joint_typicality",
]
