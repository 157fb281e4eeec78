"""AutoSAM on onnxruntime: an `autosam-export` folder answering what the PyTorch model answers at inference.

    model, processor = load_onnxruntime_model_and_processor("exported/")
    inputs = processor(images)                              # both canvases, as for the PyTorch model
    logits = model(**inputs, mode="autosam").logits         # (B, K, 4E, 4E) float32 torch tensor, on the CPU
    predictions = post_process_predictions(processor, logits, inputs["original_sizes"], model.config.mask_threshold)

`OnnxRuntimeAutoSam` takes the forward's arguments (`pixel_values`, `prompt_pixel_values`, precomputed image
features such as `image_embeddings`, clicks as `input_points` / `input_labels`, `mode`; the processor's
`original_sizes` / `reshaped_input_sizes` are ignored, any other keyword is a TypeError) and returns an
`AutoSamSegmentationOutput`: it is an `autosam_hf.inference.SegmentationModel`, as the PyTorch model is, so
`autosam_hf.inference`'s batching and post-processing serve both backends. Mode
"autosam" runs image_encoder.onnx then prompt_decoder.onnx (or the prompt decoder alone on given features);
"surrogate" runs surrogate.onnx. Sessions are created on first use, so h(g(I)) never loads SAM's encoder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model import AutoSamConfig, AutoSamImageProcessor
from ..model.configuration_autosam import canonical_mode
from ..model.modeling_autosam import AutoSamSegmentationOutput
from .dependencies import require
from .graphs import (
    ENCODER,
    INPUT_LABELS,
    INPUT_POINTS,
    MODE_GRAPHS,
    NO_POINTS,
    PIXEL_VALUES,
    PROMPT_DECODER,
    PROMPT_PIXEL_VALUES,
    SURROGATE,
)
from .manifest import read_manifest

CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"


def execution_providers(device: str = "cpu") -> list[str | tuple[str, dict[str, Any]]]:
    """onnxruntime providers for `device`: "cpu", "cuda" / "cuda:N" (needs onnxruntime-gpu), or "auto" (CUDA if
    onnxruntime has it, else CPU). Raises ValueError naming `--device` otherwise."""
    ort = require("onnxruntime", "ONNX inference")
    available = ort.get_available_providers()
    if device == "auto":
        device = "cuda" if CUDA_PROVIDER in available else "cpu"
    if device == "cpu":
        return [CPU_PROVIDER]
    if device == "cuda" or device.startswith("cuda:"):
        if CUDA_PROVIDER not in available:
            raise ValueError(
                f"--device {device}: onnxruntime here has no {CUDA_PROVIDER} (providers: {', '.join(available)}); "
                "install onnxruntime-gpu or use --device cpu"
            )
        index = device.partition(":")[2] or "0"
        return [(CUDA_PROVIDER, {"device_id": int(index)}), CPU_PROVIDER]
    raise ValueError(f"--device must be auto, cpu, cuda or cuda:N for onnxruntime, got {device!r}")


class OnnxRuntimeAutoSam:
    """The graphs of an ONNX export, run with onnxruntime (module docstring); an
    `autosam_hf.inference.SegmentationModel`.

    Args:
        folder: an `autosam-export` folder (graphs + `autosam_onnx.json`).
        providers: onnxruntime execution providers (default: the CPU).
        num_threads: intra-op threads (default `torch.get_num_threads()`, which follows OMP_NUM_THREADS, so both
            backends use the same number of cores).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        providers: list[str | tuple[str, dict[str, Any]]] | None = None,
        num_threads: int | None = None,
    ):
        self._ort = require("onnxruntime", "ONNX inference")
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        try:
            # The exported model's own config: inference reads it as it reads the PyTorch model's (mask_threshold,
            # id2label, default_mode, the class rule), whatever fields it gains.
            self.config = AutoSamConfig.from_pretrained(self.folder)
        except (OSError, ValueError) as error:
            raise ValueError(f"{self.folder} has no readable config.json: {error}") from error
        self.device = torch.device("cpu")  # inputs are handed over as CPU arrays whatever the provider
        self.dtype = torch.float32  # the graphs' inputs (`autosam_hf.runtime.model_inputs_for` casts to it)
        self.providers = providers or [CPU_PROVIDER]
        self.num_threads = num_threads or torch.get_num_threads()
        self._sessions: dict[str, Any] = {}

    # ---------------------------------------------------------------- graphs
    @property
    def graph_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["graphs"])

    def supports(self, mode: str) -> bool:
        """Whether the export has every graph `mode` runs."""
        graphs = MODE_GRAPHS.get(canonical_mode(mode))  # None for modes no export has (sam_mask_prompt)
        return graphs is not None and all(name in self.manifest["graphs"] for name in graphs)

    def check_mode(self, mode: str) -> None:
        """Raise ValueError, naming the modes the export has, when it lacks a graph `mode` runs."""
        if not self.supports(mode):
            exported = ", ".join(name for name in MODE_GRAPHS if self.supports(name)) or "none"
            raise ValueError(f"mode={mode!r} is not in the export {self.folder} (modes exported: {exported})")

    @property
    def surrogate_decoder(self) -> Any | None:
        """The session of h(g(I)) (surrogate.onnx), or None when the export has none; the PyTorch model's
        `surrogate_decoder` is None in the same case, so callers can check either the same way."""
        return self.session(SURROGATE) if SURROGATE in self.manifest["graphs"] else None

    def session(self, name: str):
        """The onnxruntime session of graph `name`, created on first use."""
        if name not in self._sessions:
            if name not in self.manifest["graphs"]:
                raise ValueError(f"{self.folder} has no {name!r} graph (exported: {', '.join(self.graph_names)})")
            path = self.folder / self.manifest["graphs"][name]["file"]
            options = self._ort.SessionOptions()
            options.intra_op_num_threads = self.num_threads
            try:
                self._sessions[name] = self._ort.InferenceSession(str(path), options, providers=self.providers)
            except Exception as error:  # onnxruntime's errors derive from Exception only
                raise ValueError(f"onnxruntime cannot load {path}: {error}") from error
        return self._sessions[name]

    def _run(self, name: str, tensors: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Run graph `name` on its inputs, taken by name from `tensors` and checked against the manifest's shapes."""
        feeds = {}
        for spec in self.manifest["graphs"][name]["inputs"]:
            tensor = tensors.get(spec["name"])
            if tensor is None:
                raise ValueError(f"{spec['name']} is required: graph {name!r} reads it ({self._source(spec)})")
            expected = tuple(spec["shape"][1:])
            # A symbolic size (a string, e.g. "points") takes any size.
            fits = tensor.ndim == len(spec["shape"]) and all(
                isinstance(size, str) or size == given for size, given in zip(expected, tensor.shape[1:], strict=True)
            )
            if not fits:
                raise ValueError(
                    f"{spec['name']}: expected shape (batch, {', '.join(map(str, expected))}) for graph {name!r}, got "
                    f"{tuple(tensor.shape)}"
                )
            feeds[spec["name"]] = np.ascontiguousarray(tensor.detach().cpu().numpy().astype(spec["dtype"]))
        outputs = self.session(name).run(None, feeds)
        names = [spec["name"] for spec in self.manifest["graphs"][name]["outputs"]]
        return {output: torch.from_numpy(value) for output, value in zip(names, outputs, strict=True)}

    def _source(self, spec: dict[str, Any]) -> str:
        source = spec["source"]
        if "canvas" in source:
            return f"the processor's {source['canvas']!r} canvas"
        if "prompt" in source:
            return source["prompt"]
        return f"output {source['output']!r} of graph {source['graph']!r}"

    # ---------------------------------------------------------------- the forward pass
    def image_features(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """SAM's encoder (image_encoder.onnx): (B, 3, S, S) → the named tensors the prompt decoder reads."""
        return self._run(ENCODER, {PIXEL_VALUES: pixel_values})

    def __call__(
        self,
        pixel_values: torch.Tensor | None = None,
        prompt_pixel_values: torch.Tensor | None = None,
        mode: str | None = None,
        input_points: torch.Tensor | None = None,
        input_labels: torch.Tensor | None = None,
        input_boxes: torch.Tensor | None = None,
        original_sizes: torch.Tensor | None = None,
        reshaped_input_sizes: torch.Tensor | None = None,
        **image_features: torch.Tensor,
    ) -> AutoSamSegmentationOutput:
        """The forward pass of `mode` (default the export's `default_mode`) → `AutoSamSegmentationOutput` with
        `logits` (B, K, 4E, 4E) and, for "autosam", `iou_scores`, as float32 CPU tensors.

        input_points (B, K, N, 2) / input_labels (B, K, N): clicks in SAM-canvas pixels, as for the PyTorch model
        (labels default to 1); without them the graph gets one not-a-point per class (`graphs.NO_POINTS`), which
        it decodes as without prompts. Boxes are not in the graph (ValueError). image_features: precomputed image
        features by name (`image_embeddings`; SAM's encoder is then skipped); another keyword is a TypeError.
        """
        mode = canonical_mode(mode or self.config.default_mode)
        self.check_mode(mode)
        decoder_inputs = self.manifest["graphs"].get(PROMPT_DECODER, {}).get("inputs", [])
        feature_names = [spec["name"] for spec in decoder_inputs if "graph" in spec["source"]]
        unexpected = sorted(set(image_features) - set(feature_names))
        if unexpected:
            raise TypeError(f"OnnxRuntimeAutoSam got unexpected keyword argument(s) {', '.join(map(repr, unexpected))}")
        clicks = input_points is not None or input_labels is not None or input_boxes is not None
        if mode == "surrogate":
            if clicks:
                raise ValueError("mode='surrogate' (h(g(I))) takes no points or boxes; use mode='autosam'")
            logits = self._run(SURROGATE, {PROMPT_PIXEL_VALUES: prompt_pixel_values})["logits"]
            return AutoSamSegmentationOutput(logits=logits, surrogate_logits=logits)
        features = {name: image_features.get(name) for name in feature_names}
        if any(value is None for value in features.values()):
            if pixel_values is None:
                raise ValueError(f"mode={mode!r} runs SAM: pass pixel_values (SAM's canvas) or {', '.join(features)}")
            features = self.image_features(pixel_values)
        points = self._point_inputs(decoder_inputs, input_points, input_labels, input_boxes, prompt_pixel_values)
        outputs = self._run(PROMPT_DECODER, {PROMPT_PIXEL_VALUES: prompt_pixel_values, **points, **features})
        return AutoSamSegmentationOutput(
            logits=outputs["logits"],
            iou_scores=outputs.get("iou_scores"),
            image_embeddings=features.get("image_embeddings"),
        )

    def _point_inputs(self, decoder_inputs, input_points, input_labels, input_boxes, prompt_pixel_values) -> dict:
        """The prompt decoder's point inputs: the clicks given, or one not-a-point per class."""
        if input_boxes is not None:
            raise ValueError("input_boxes: the exported prompt decoder takes points only; use the PyTorch model")
        point_spec = next((spec for spec in decoder_inputs if spec["name"] == INPUT_POINTS), None)
        if point_spec is None:
            if input_points is not None:
                raise ValueError(f"input_points: {self.folder} was exported without point inputs; export it again")
            return {}
        if input_points is None:
            if input_labels is not None:
                raise ValueError("input_labels: given without input_points")
            if prompt_pixel_values is None:
                return {}  # `_run` names the missing canvas
            shape = (prompt_pixel_values.shape[0], point_spec["shape"][1], 1)
            input_points = torch.tensor(NO_POINTS["coordinates"]).expand(*shape, 2)
            input_labels = torch.full(shape, NO_POINTS["label"])
        elif input_labels is None:
            input_labels = torch.ones(input_points.shape[:-1], dtype=torch.long)
        if input_labels.shape != input_points.shape[:-1]:
            raise ValueError(
                f"input_labels: expected shape {tuple(input_points.shape[:-1])} (one per point of input_points), "
                f"got {tuple(input_labels.shape)}"
            )
        return {INPUT_POINTS: input_points, INPUT_LABELS: input_labels}


def load_onnxruntime_model_and_processor(
    folder: str | os.PathLike, device: str = "cpu", num_threads: int | None = None
) -> tuple[OnnxRuntimeAutoSam, AutoSamImageProcessor]:
    """An export folder's onnxruntime model and its processor (thresholding at the exported `mask_threshold`).

    Raises:
        FileNotFoundError / ValueError: a missing folder, one without `autosam_onnx.json`, a missing graph file,
            a device onnxruntime cannot use, or onnxruntime not installed (each message names it).
    """
    model = OnnxRuntimeAutoSam(folder, providers=execution_providers(device), num_threads=num_threads)
    try:
        processor = AutoSamImageProcessor.from_pretrained(folder)
    except OSError as error:
        raise ValueError(f"{folder} has no readable processor (preprocessor_config.json): {error}") from error
    processor.mask_threshold = model.config.mask_threshold
    return model, processor


__all__ = [
    "OnnxRuntimeAutoSam",
    "execution_providers",
    "load_onnxruntime_model_and_processor",
]
