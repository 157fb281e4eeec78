"""The `evaluate` module (metrics/autosam_segmentation): loads offline and gives what the plain functions give."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_command

from autosam_hf.metrics import (
    EVALUATE_MODULE_PATH,
    SegmentationMetrics,
)
from metrics.test_segmentation import EXPECTED_KEYS

REPO_ROOT = Path(__file__).resolve().parents[2]


# Run in a fresh interpreter so that the offline switches apply from the first import of the HF libraries.
EVALUATE_SCRIPT = """
import json, sys
import numpy as np
import evaluate
from autosam_hf.metrics import load_metric

arrays = json.load(sys.stdin)
predictions = [np.array(p, dtype=np.float32) for p in arrays["predictions"]]
references = [np.array(r, dtype=np.int64) for r in arrays["references"]]
from_path = evaluate.load(sys.argv[1]).compute(predictions=predictions, references=references)
from_package = load_metric().compute(predictions=predictions, references=references)
print(json.dumps({"from_path": from_path, "from_package": from_package}))
"""


def test_evaluate_module_loads_offline_and_matches_plain_functions(tmp_path):
    rng = np.random.default_rng(2)
    predictions, references = [], []
    # Each pair has its own size.
    for height, width in [(12, 20), (25, 9), (16, 16)]:
        target = np.zeros((height, width), dtype=np.int64)
        target[2 : height - 3, 3 : width - 2] = 1
        predictions.append(np.clip(0.4 * target + 0.6 * rng.random((height, width)), 0, 1).astype(np.float32))
        references.append(target)

    expected = SegmentationMetrics()
    for prediction, reference in zip(predictions, references, strict=True):
        expected.update_from_probabilities(prediction, reference)
    expected = expected.compute()

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    inputs = json.dumps(
        {"predictions": [p.tolist() for p in predictions], "references": [r.tolist() for r in references]}
    )
    completed = run_command(
        [sys.executable, "-c", EVALUATE_SCRIPT, str(EVALUATE_MODULE_PATH.parent)],
        input=inputs,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout.strip().splitlines()[-1])

    for loaded in (results["from_path"], results["from_package"]):
        assert set(loaded) == EXPECTED_KEYS
        for key, value in expected.items():
            assert loaded[key] == pytest.approx(value, rel=1e-12), key
    assert 0.5 < expected["dice"] < 1.0
