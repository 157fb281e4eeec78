"""What each exported graph computes: small `nn.Module`s around AutoSAM's public `forward` and `image_features`.

    encoder         pixel_values (B, 3, S, S)            → every named tensor of `model.image_features`
                                                           (for SAM: image_embeddings (B, C, E, E))
    prompt_decoder  prompt_pixel_values (B, 3, P, P)     → logits (B, K, 4E, 4E), iou_scores: g, then SAM's mask
                    + input_points (B, K, N, 2),           decoder (mode "autosam" with precomputed embeddings)
                      input_labels (B, K, N)               and the clicks: N points per class, SAM-canvas pixels
                    + the encoder's named tensors
    surrogate       prompt_pixel_values (B, 3, P, P)     → logits (B, K, 4E, 4E): h(g(I)), SAM not run

S is SAM's canvas, P g's (the processor's two canvases), K the number of mask channels the forward returns. The
modules call the model only through its public API, so the export follows the forward when it changes (more
classes, other frozen models with other named features); no shape is hard-coded here.

The point inputs are always there, as in segment-anything's own ONNX export (`SamOnnxModel`): a client without
clicks passes one padding point (0, 0) with label -1 per class (`NO_POINTS`), and such a class is decoded exactly
as without prompts (`AutoSamForSegmentation.decode_masks`; the graph computes both decodes and selects per
class). N is a dynamic axis. Boxes are not graph inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..model import AutoSamForSegmentation, AutoSamImageProcessor
from ..model.image_processing_autosam import CANVAS_OUTPUTS, PROMPT_CANVAS, SAM_CANVAS

ENCODER, PROMPT_DECODER, SURROGATE = "encoder", "prompt_decoder", "surrogate"
GRAPH_NAMES = (ENCODER, PROMPT_DECODER, SURROGATE)
GRAPH_FILES = {ENCODER: "image_encoder.onnx", PROMPT_DECODER: "prompt_decoder.onnx", SURROGATE: "surrogate.onnx"}
PIXEL_VALUES, PROMPT_PIXEL_VALUES = CANVAS_OUTPUTS[SAM_CANVAS], CANVAS_OUTPUTS[PROMPT_CANVAS]
# The graphs each forward mode runs, in order (the encoder's outputs feed the prompt decoder).
MODE_GRAPHS = {"autosam": (ENCODER, PROMPT_DECODER), "surrogate": (SURROGATE,)}
# The dynamo exporter specialises a dimension whose example size is 1 to that constant (0/1 specialisation), so the
# example batch is 2; the batch dimension is then declared dynamic. Likewise 2 example points per class.
EXAMPLE_BATCH = 2
INPUT_POINTS, INPUT_LABELS = "input_points", "input_labels"
# The prompt decoder's point inputs when there are no clicks: one point (0, 0) per class, labelled not-a-point.
NO_POINTS = {"coordinates": (0.0, 0.0), "label": -1}


class ImageEncoderGraph(nn.Module):
    """pixel_values (B, 3, S, S) → the tensors of `model.image_features`, in `feature_names` order."""

    def __init__(self, model: AutoSamForSegmentation, feature_names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.feature_names = feature_names

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.model.image_features(pixel_values)
        return tuple(features[name] for name in self.feature_names)


class PromptDecoderGraph(nn.Module):
    """(prompt_pixel_values (B, 3, P, P), *image features) → (logits, iou_scores) of mode "autosam"."""

    def __init__(self, model: AutoSamForSegmentation, feature_names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.feature_names = feature_names

    def forward(
        self,
        prompt_pixel_values: torch.Tensor,
        input_points: torch.Tensor,
        input_labels: torch.Tensor,
        *image_features: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        features = dict(zip(self.feature_names, image_features, strict=True))
        outputs = self.model(
            prompt_pixel_values=prompt_pixel_values,
            input_points=input_points,
            input_labels=input_labels,
            mode="autosam",
            return_dict=True,
            **features,
        )
        return outputs.logits, outputs.iou_scores


class SurrogateGraph(nn.Module):
    """prompt_pixel_values (B, 3, P, P) → logits of mode "surrogate" (h(g(I)))."""

    def __init__(self, model: AutoSamForSegmentation):
        super().__init__()
        self.model = model

    def forward(self, prompt_pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(prompt_pixel_values=prompt_pixel_values, mode="surrogate", return_dict=True).logits


@dataclass(frozen=True)
class GraphSpec:
    """One graph to export: its module, the names of its inputs and outputs, example inputs (batch
    `EXAMPLE_BATCH`), where each input comes from: `{"canvas": "sam" | "prompt"}` (a processor canvas),
    `{"graph": "encoder", "output": name}` or `{"prompt": ...}` (the user's clicks), and the inputs' dynamic axes
    besides the batch (`{input name: {axis: name}}`)."""

    name: str
    file: str
    module: nn.Module
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    example_inputs: tuple[torch.Tensor, ...]
    input_sources: dict[str, dict[str, str]]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)


def canvas_side(processor: AutoSamImageProcessor, canvas: str) -> int:
    """The side of the square canvas `canvas` ("sam": S, "prompt": P) the processor makes images into."""
    if canvas == PROMPT_CANVAS:
        if not processor.prompt_size:
            raise ValueError("processor: the export needs a processor with a prompt canvas (prompt_size)")
        return processor.prompt_size
    return processor.sam_canvas_side


def default_graph_names(model: AutoSamForSegmentation) -> tuple[str, ...]:
    """The graphs of the model's use: the surrogate only for a SAM-free model (`--stage standalone`: default mode
    surrogate, its g never trained through SAM), else the encoder and the prompt decoder, and the surrogate with h."""
    if model.config.default_mode == "surrogate":
        return (SURROGATE,)
    return GRAPH_NAMES if model.config.use_surrogate_decoder else (ENCODER, PROMPT_DECODER)


def check_graph_names(names: tuple[str, ...] | list[str], model: AutoSamForSegmentation) -> tuple[str, ...]:
    """`names` in export order, checked: known graphs, no repeats, and h present when "surrogate" is asked for."""
    unknown = [name for name in names if name not in GRAPH_NAMES]
    if unknown or not names:
        raise ValueError(f"graphs must be a non-empty subset of {', '.join(GRAPH_NAMES)}; got {', '.join(names)}")
    if SURROGATE in names and not model.config.use_surrogate_decoder:
        raise ValueError("graphs: 'surrogate' needs a model with a surrogate decoder h (use_surrogate_decoder)")
    return tuple(name for name in GRAPH_NAMES if name in names)


def build_graph(name: str, model: AutoSamForSegmentation, processor: AutoSamImageProcessor) -> GraphSpec:
    """The `GraphSpec` of graph `name` for `model`, with random example inputs on the model's device."""
    generator = torch.Generator().manual_seed(0)

    def example(*shape: int) -> torch.Tensor:
        return torch.randn(EXAMPLE_BATCH, *shape, generator=generator).to(model.device)

    feature_shapes = model.image_feature_shapes()
    feature_names = tuple(feature_shapes)
    if name == ENCODER:
        side = canvas_side(processor, SAM_CANVAS)
        return GraphSpec(
            name=name,
            file=GRAPH_FILES[name],
            module=ImageEncoderGraph(model, feature_names),
            input_names=(PIXEL_VALUES,),
            output_names=feature_names,
            example_inputs=(example(3, side, side),),
            input_sources={PIXEL_VALUES: {"canvas": SAM_CANVAS}},
        )
    side = canvas_side(processor, PROMPT_CANVAS)
    prompt_pixel_values = example(3, side, side)
    prompt_source = {PROMPT_PIXEL_VALUES: {"canvas": PROMPT_CANVAS}}
    if name == PROMPT_DECODER:
        num_classes, points_per_class = model.config.num_classes, 2
        canvas = canvas_side(processor, SAM_CANVAS)
        points = torch.rand(EXAMPLE_BATCH, num_classes, points_per_class, 2, generator=generator) * canvas
        # Clicked classes (image 0) and unclicked ones (image 1); verification draws its labels from these.
        labels = torch.tensor([[1, 0], [NO_POINTS["label"], -10]]).view(2, 1, 2).expand(-1, num_classes, -1)
        point_sources = {
            INPUT_POINTS: {
                "prompt": "points: (x, y) in SAM-canvas pixels (the processor's canvas_coordinates), N per class; "
                f"without clicks one point {list(NO_POINTS['coordinates'])} per class"
            },
            INPUT_LABELS: {
                "prompt": "labels: 1 positive, 0 negative, -10 padding, -1 not-a-point; without clicks "
                f"{NO_POINTS['label']} (such a class is decoded as without prompts)"
            },
        }
        return GraphSpec(
            name=name,
            file=GRAPH_FILES[name],
            module=PromptDecoderGraph(model, feature_names),
            input_names=(PROMPT_PIXEL_VALUES, INPUT_POINTS, INPUT_LABELS, *feature_names),
            output_names=("logits", "iou_scores"),
            example_inputs=(
                prompt_pixel_values,
                points.to(model.device),
                labels.contiguous().to(model.device),
                *(example(*feature_shapes[feature]) for feature in feature_names),
            ),
            input_sources={
                **prompt_source,
                **point_sources,
                **{feature: {"graph": ENCODER, "output": feature} for feature in feature_names},
            },
            dynamic_axes={INPUT_POINTS: {2: "points"}, INPUT_LABELS: {2: "points"}},
        )
    if name == SURROGATE:
        return GraphSpec(
            name=name,
            file=GRAPH_FILES[name],
            module=SurrogateGraph(model),
            input_names=(PROMPT_PIXEL_VALUES,),
            output_names=("logits",),
            example_inputs=(prompt_pixel_values,),
            input_sources=prompt_source,
        )
    raise ValueError(f"Unknown graph {name!r}; expected one of {', '.join(GRAPH_NAMES)}")


__all__ = [
    "ENCODER",
    "EXAMPLE_BATCH",
    "INPUT_LABELS",
    "INPUT_POINTS",
    "NO_POINTS",
    "GRAPH_FILES",
    "GRAPH_NAMES",
    "MODE_GRAPHS",
    "PIXEL_VALUES",
    "PROMPT_DECODER",
    "PROMPT_PIXEL_VALUES",
    "SURROGATE",
    "GraphSpec",
    "ImageEncoderGraph",
    "PromptDecoderGraph",
    "SurrogateGraph",
    "build_graph",
    "canvas_side",
    "check_graph_names",
    "default_graph_names",
]
