"""Failure analysis on labelled sample sets: Ronchi & Perona's keypoint error taxonomy, per-set
predictions for every cycle, per-image / per-person scores, sorting and filtering, and the pictures.

    entries = find_sample_sets(data_root())                  # labelled sets (COCO-17 / CrowdPose-14)
    sample_set = load_sample_set(entries[0].ann_path)
    predictions = predict_set(sample_set, Predictor(), cycles=3)  # GT boxes; box_source="detected"
    analysis = analyse_set(sample_set, predictions, head_neck="drop")
    select_images(analysis, cycle=1, sort="worst OKS", bucket="hard", error_class="swap")
"""

from sdpose_core.analysis.overlay import (
    CLASS_COLORS,
    DisplayTransform,
    brighten_if_dark,
    crop_view,
    fit_to,
    render_comparison,
)
from sdpose_core.analysis.sample_sets import (
    SampleImage,
    SampleSet,
    SampleSetEntry,
    describe_set,
    download_dataset,
    find_sample_sets,
    load_sample_set,
)
from sdpose_core.analysis.set_analysis import (
    BUCKET_FILTERS,
    CLASS_FILTERS,
    SORT_KEYS,
    ImageRecord,
    PersonRecord,
    SetAnalysis,
    analyse_set,
    rank_disagreement,
    select_images,
    to_set_layout,
)
from sdpose_core.analysis.set_predictions import (
    BOX_SOURCES,
    ImagePredictions,
    ResultCache,
    SetPredictions,
    first_cycles,
    predict_set,
)
from sdpose_core.analysis.taxonomy import (
    ERROR_CLASSES,
    GOOD_KS,
    MATCH_OKS,
    NEAR_KS,
    UNSCORED,
    KeypointErrors,
    classify_keypoints,
    keypoint_similarity,
    match_people,
)

__all__ = [
    "BOX_SOURCES", "BUCKET_FILTERS", "CLASS_COLORS", "CLASS_FILTERS", "ERROR_CLASSES", "GOOD_KS", "MATCH_OKS",
    "NEAR_KS", "SORT_KEYS", "UNSCORED", "DisplayTransform", "ImagePredictions", "ImageRecord", "KeypointErrors",
    "PersonRecord", "ResultCache", "SampleImage", "SampleSet", "SampleSetEntry", "SetAnalysis", "SetPredictions",
    "analyse_set", "brighten_if_dark", "classify_keypoints", "crop_view", "describe_set", "download_dataset",
    "find_sample_sets", "first_cycles", "fit_to", "keypoint_similarity", "load_sample_set", "match_people",
    "predict_set", "rank_disagreement", "render_comparison", "select_images", "to_set_layout",
]
