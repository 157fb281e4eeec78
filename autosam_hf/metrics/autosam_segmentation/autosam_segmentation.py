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
"""AutoSAM segmentation metrics as an `evaluate` module.

`evaluate.load` copies this file into its modules cache, so it must only use absolute imports: the metric logic
lives in the installed `autosam_hf.metrics.segmentation`, and this file only adapts it to `evaluate`.
"""

import datasets
import evaluate
import numpy as np

from autosam_hf.metrics.segmentation import DEFAULT_THRESHOLD, SegmentationMetrics

_CITATION = """\
@article{shaharabany2023autosam,
  title={AutoSAM: Adapting SAM to Medical Images by Overloading the Prompt Encoder},
  author={Shaharabany, Tal and Dahan, Aviad and Giryes, Raja and Wolf, Lior},
  journal={arXiv preprint arXiv:2306.06370},
  year={2023}
}
"""

_DESCRIPTION = """\
The metrics of the AutoSAM paper for binary (foreground/background) medical image segmentation, each computed per
image and then averaged over images: foreground Dice and IoU of the mask `prediction > threshold` (both 1.0 when
prediction and reference are both empty, 0.0 when exactly one is), and, from the probability map via pysodmetrics,
S-alpha, mean E-phi, weighted F-beta, mean F-beta, threshold-averaged Dice, Sensitivity and MAE.

Images may differ in size from one pair to the next (features are nested sequences, not fixed-size arrays); pass
each prediction at its reference's original resolution.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of 2-D arrays (H_i, W_i)):
        Foreground probabilities in [0, 1]. A binary 0/1 mask is also accepted; the map-based metrics then
        describe that mask.
    references (`list` of 2-D arrays (H_i, W_i)):
        Binary ground-truth masks holding 0/1.
    threshold (`float`, *optional*, defaults to 0.5):
        Probability above which a pixel is foreground, for Dice and IoU.

Returns:
    `dict[str, float]` with keys `dice`, `iou`, `s_alpha`, `e_phi_mean`, `f_beta_weighted`, `f_beta_mean`,
    `dice_threshold_mean`, `sensitivity`, `mae` (see `autosam_hf.metrics.SegmentationMetrics.compute`).

Examples:
    >>> import numpy as np
    >>> metric = evaluate.load("autosam_hf/metrics/autosam_segmentation")
    >>> reference = np.array([[0, 1, 1, 0]] * 2)
    >>> prediction = np.array([[0.0, 0.9, 0.2, 0.0]] * 2)
    >>> results = metric.compute(predictions=[prediction], references=[reference])
    >>> round(results["dice"], 4), round(results["iou"], 4)
    (0.6667, 0.5)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AutosamSegmentation(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Nested sequences rather than `Array2D`: `Array2D` only allows its first dimension to vary, and each
            # image keeps its own height and width. Predictions are floats so that probability maps survive.
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2306.06370", "https://github.com/lartpang/PySODMetrics"],
        )

    def _compute(self, predictions, references, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
        metrics = SegmentationMetrics()
        for prediction, reference in zip(predictions, references, strict=True):
            # float32, as stored, so that results match `SegmentationMetrics` fed the same float32 maps.
            metrics.update_from_probabilities(
                np.asarray(prediction, dtype=np.float32), np.asarray(reference), threshold=threshold
            )
        return metrics.compute()
