# Copyright 2025 The autosam-hf Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The AutoSAM paper's segmentation metrics, as plain functions and as an `evaluate` module; per-class Dice/IoU of
multi-class models; nucleus instance metrics (AJI, count error)."""

from pathlib import Path

from .classes import (
    DETAIL_METRIC_NAMES,
    MulticlassSegmentationMetrics,
    class_metric_key,
    class_names_of,
    metric_display_name,
    per_class_dice_iou,
)
from .instances import InstanceMetrics, aggregated_jaccard_index, count_instances, instances_from_label_map
from .segmentation import (
    DEFAULT_THRESHOLD,
    SegmentationMetrics,
    VideoSegmentationMetrics,
    compute_video_metrics,
    dice_iou_per_image,
)

# The `evaluate` module script ships inside the package (see `package_data` in setup.cfg).
EVALUATE_MODULE_PATH = Path(__file__).parent / "autosam_segmentation" / "autosam_segmentation.py"


def load_metric(**kwargs):
    """
    Loads the `autosam_segmentation` `evaluate` module from this package, without the Hub (works offline).

    Args:
        kwargs: passed to `evaluate.load` (e.g. `experiment_id`, `num_process`, `process_id`).

    Returns:
        `evaluate.EvaluationModule`: its `compute(predictions=..., references=...)` returns the keys of
        [`SegmentationMetrics.compute`].
    """
    # Imported here: `evaluate` pulls in `datasets`, which the plain metric functions do not need.
    import evaluate

    return evaluate.load(str(EVALUATE_MODULE_PATH), **kwargs)


__all__ = [
    "DEFAULT_THRESHOLD",
    "DETAIL_METRIC_NAMES",
    "EVALUATE_MODULE_PATH",
    "InstanceMetrics",
    "MulticlassSegmentationMetrics",
    "SegmentationMetrics",
    "VideoSegmentationMetrics",
    "aggregated_jaccard_index",
    "class_metric_key",
    "class_names_of",
    "compute_video_metrics",
    "count_instances",
    "dice_iou_per_image",
    "instances_from_label_map",
    "load_metric",
    "metric_display_name",
    "per_class_dice_iou",
]
