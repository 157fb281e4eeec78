"""Tests of the SAM image-embedding cache (autosam_hf.data.embedding_cache) with a tiny random SAM."""

import json
import logging
import os
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import free_port, run_command
from PIL import Image
from transformers import SamConfig, SamModel
from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

from autosam_hf.data import POLYP_AUGMENTATION, EmbeddingCache, JointAugmentation, load_image_mask_folder
from autosam_hf.data import embedding_cache as embedding_cache_module
from autosam_hf.data.embedding_cache import _SamCanvases, entry_bytes
from autosam_hf.model import AutoSamImageProcessor
from autosam_hf.model.device_canvas import preprocess_on_device

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_SIZES = [(30, 20), (24, 24), (17, 41), (50, 10), (24, 24)]  # (width, height)
FLOAT32_TOLERANCE = 1e-5  # batch-composition noise of the encoder, documented in embedding_cache.py


def make_sam_config() -> SamConfig:
    # transformers' own SAM test sizes: embedding (B, 32, 12, 12).
    return SamConfig(
        vision_config=dict(
            image_size=24, patch_size=2, hidden_size=36, num_hidden_layers=2, num_attention_heads=4,
            output_channels=32, num_pos_feats=16, global_attn_indexes=[1], mlp_dim=64,
            initializer_range=0.02,  # the default 1e-10 gives embeddings of ~1e-22, where any tolerance passes
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=24, patch_size=2, mask_input_channels=4),
        mask_decoder_config=dict(
            hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4, iou_head_hidden_dim=32
        ),
    )  # fmt: skip


def make_processor(**overrides) -> SamImageProcessorPil:
    settings = dict(
        size={"longest_edge": 24}, pad_size={"height": 24, "width": 24},
        mask_size={"longest_edge": 48}, mask_pad_size={"height": 48, "width": 48},
    )  # fmt: skip
    return SamImageProcessorPil(**{**settings, **overrides})


@pytest.fixture
def sam() -> SamModel:
    torch.manual_seed(0)
    return SamModel(make_sam_config()).eval()


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for stem, (width, height) in enumerate(IMAGE_SIZES):
        (root / "images").mkdir(exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray((rng.random((height, width)) > 0.5).astype(np.uint8)).save(root / "masks" / f"{stem}.png")
    return root


@pytest.fixture(scope="module")
def dataset(image_folder):
    return load_image_mask_folder(image_folder)


def count_encoded_images(sam: SamModel) -> dict:
    """Count the images SAM's encoder sees from now on."""
    counter = {"images": 0}
    original = sam.get_image_embeddings

    def counting(pixel_values, *args, **kwargs):
        counter["images"] += pixel_values.shape[0]
        return original(pixel_values, *args, **kwargs)

    sam.get_image_embeddings = counting
    return counter


def fresh_embedding(sam, processor, dataset, augmentation, index, view) -> torch.Tensor:
    example = dataset[index]
    image, _ = augmentation(example["image"], example["mask"], index=index, view=view)
    pixel_values = processor(images=[image], return_tensors="pt")["pixel_values"]
    return SamModel.get_image_embeddings(sam, pixel_values)[0]  # the class method: not counted


def build_exact(*args, **kwargs) -> EmbeddingCache:
    """float32 storage: entries equal fresh embeddings up to the encoder's batch-size dependence."""
    return EmbeddingCache.build(*args, storage_dtype=torch.float32, **kwargs)


def embedding(cache: EmbeddingCache, index: int, view: int) -> torch.Tensor:
    return cache.get(index, view)["image_embeddings"]


def assert_cache_matches_fresh(cache, sam, processor, dataset, augmentation, atol=FLOAT32_TOLERANCE):
    for index in range(len(dataset)):
        for view in range(cache.num_views):
            expected = fresh_embedding(sam, processor, dataset, augmentation, index, view)
            torch.testing.assert_close(embedding(cache, index, view), expected, atol=atol, rtol=0)


def test_cached_embeddings_equal_fresh_ones(sam, dataset, tmp_path):
    processor, augmentation = make_processor(), JointAugmentation(POLYP_AUGMENTATION, seed=0)
    counter = count_encoded_images(sam)
    cache = build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=3, batch_size=2)
    assert counter["images"] == 15
    assert len(cache) == 5 and cache.num_views == 3
    assert set(cache.get(4, 2)) == {"image_embeddings"}
    assert embedding(cache, 4, 2).shape == (32, 12, 12) and embedding(cache, 4, 2).dtype == torch.float32
    assert [cache.view_for_epoch(epoch) for epoch in range(5)] == [0, 1, 2, 0, 1]
    assert cache.get_batch([0, 3], view=1)["image_embeddings"].shape == (2, 32, 12, 12)
    assert_cache_matches_fresh(cache, sam, processor, dataset, augmentation)
    assert not torch.equal(embedding(cache, 0, 0), embedding(cache, 0, 1))  # views are different images

    again = build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=3)
    assert counter["images"] == 15  # nothing recomputed
    assert again.path(2, 1) == cache.path(2, 1)


def test_identity_cache_and_argument_checks(sam, dataset, tmp_path):
    processor, identity = make_processor(), JointAugmentation()
    counter = count_encoded_images(sam)
    cache = build_exact(dataset, sam, processor, tmp_path, batch_size=4)
    assert cache.num_views == 1 and counter["images"] == 5
    assert_cache_matches_fresh(cache, sam, processor, dataset, identity)
    # Unaugmented embeddings depend on the image only: a reordered dataset reuses them (1 and 4 are the same size,
    # but different images, so they keep distinct files).
    reordered = build_exact(dataset.select([4, 3, 2, 1, 0]), sam, processor, tmp_path)
    assert counter["images"] == 5
    assert reordered.path(0) == cache.path(4)
    with pytest.raises(ValueError, match="num_views"):
        build_exact(dataset, sam, processor, tmp_path, num_views=2)
    with pytest.raises(IndexError, match="1 view"):
        cache.get(0, 1)


def test_changed_sam_weights_invalidate(sam, dataset, tmp_path):
    processor, augmentation = make_processor(), JointAugmentation(POLYP_AUGMENTATION)
    counter = count_encoded_images(sam)
    before = build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=2)
    with torch.no_grad():
        sam.mask_decoder.iou_prediction_head.proj_out.bias.add_(1.0)  # not part of the image encoder
    build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=2)
    assert counter["images"] == 10

    with torch.no_grad():
        sam.vision_encoder.neck.conv1.weight.mul_(1.1)
    after = build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=2)
    assert counter["images"] == 20
    assert after.directory != before.directory
    assert_cache_matches_fresh(after, sam, processor, dataset, augmentation)
    assert not torch.allclose(embedding(after, 0, 0), embedding(before, 0, 0))


def test_changed_processor_setting_invalidates(sam, dataset, tmp_path):
    augmentation = JointAugmentation(POLYP_AUGMENTATION)
    counter = count_encoded_images(sam)
    build_exact(dataset, sam, make_processor(), tmp_path, augmentation, num_views=2)
    processor = make_processor(image_mean=[0.5, 0.5, 0.5])
    cache = build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=2)
    assert counter["images"] == 20
    assert_cache_matches_fresh(cache, sam, processor, dataset, augmentation)


def test_settings_outside_sams_canvas_reuse_the_cache(sam, dataset, tmp_path):
    augmentation = JointAugmentation(POLYP_AUGMENTATION)
    counter = count_encoded_images(sam)
    build_exact(dataset, sam, make_processor(), tmp_path, augmentation, num_views=2)
    processor = make_processor(mask_size={"longest_edge": 32}, mask_pad_size={"height": 32, "width": 32})
    cache = build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=2)
    assert counter["images"] == 10
    assert_cache_matches_fresh(cache, sam, processor, dataset, augmentation)


def test_changed_augmentation_or_image_invalidates(sam, dataset, image_folder, tmp_path):
    processor = make_processor()
    counter = count_encoded_images(sam)
    build_exact(dataset, sam, processor, tmp_path, JointAugmentation(POLYP_AUGMENTATION, seed=0), num_views=2)
    build_exact(dataset, sam, processor, tmp_path, JointAugmentation(POLYP_AUGMENTATION, seed=1), num_views=2)
    assert counter["images"] == 20

    edited_folder = tmp_path / "edited"
    shutil.copytree(image_folder, edited_folder)
    Image.fromarray(np.zeros((24, 24, 3), dtype=np.uint8)).save(edited_folder / "images" / "1.png")
    edited = load_image_mask_folder(edited_folder)
    augmentation = JointAugmentation(POLYP_AUGMENTATION, seed=1)
    cache = build_exact(edited, sam, processor, tmp_path, augmentation, num_views=2)
    assert counter["images"] == 22  # only the two views of the edited image
    assert_cache_matches_fresh(cache, sam, processor, edited, augmentation)


def test_killed_build_resumes(sam, dataset, tmp_path, monkeypatch):
    processor, augmentation = make_processor(), JointAugmentation(POLYP_AUGMENTATION)
    counter = count_encoded_images(sam)
    save = embedding_cache_module._save_atomically
    saved = []

    def save_then_die(tensor, path, key):
        if len(saved) == 4:
            raise KeyboardInterrupt  # the process is killed while writing the 5th file
        save(tensor, path, key)
        saved.append(path)

    monkeypatch.setattr(embedding_cache_module, "_save_atomically", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=3, batch_size=2)
    monkeypatch.undo()
    assert counter["images"] == 6  # 3 batches of 2 reached the encoder

    cache = build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=3, batch_size=2)
    assert counter["images"] == 6 + 11  # only the 11 missing items
    assert_cache_matches_fresh(cache, sam, processor, dataset, augmentation)

    # Damage: a deleted file, a truncated file, a file of another key, and a temporary file of a killed writer.
    cache.path(0, 0).unlink()
    truncated = cache.path(1, 2)
    truncated.write_bytes(truncated.read_bytes()[:100])
    os.replace(cache.path(3, 1), cache.path(2, 1))  # right format, wrong content
    stray = cache.path(4, 0).with_name(cache.path(4, 0).name + ".12345.tmp")
    stray.write_bytes(b"partial")
    cache = build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=3, batch_size=2)
    assert counter["images"] == 17 + 4  # (0, 0), (1, 2), (2, 1) and the now missing (3, 1)
    assert not list(cache.directory.glob("*.tmp"))
    assert_cache_matches_fresh(cache, sam, processor, dataset, augmentation)


def test_float16_storage_error_is_half_precision_rounding(sam, dataset, tmp_path):
    processor, augmentation = make_processor(), JointAugmentation(POLYP_AUGMENTATION)
    exact = build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=2)
    half = EmbeddingCache.build(dataset, sam, processor, tmp_path, augmentation, num_views=2)  # the default
    assert half.directory != exact.directory
    for index in range(len(dataset)):
        for view in range(2):
            reference, stored = embedding(exact, index, view), embedding(half, index, view)
            # Round to nearest in float16: relative error <= 2**-11 for normal values, 2**-25 absolute below them.
            bound = torch.clamp(reference.abs() * 2**-11, min=2**-25)
            assert ((stored - reference).abs() <= bound).all()


WORKER_SCRIPT = """
import json, sys
import torch
from accelerate import Accelerator, PartialState
from transformers import SamModel
from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil
from autosam_hf.data import POLYP_AUGMENTATION, EmbeddingCache, JointAugmentation, load_image_mask_folder

model_dir, data_dir, cache_dir, out_dir = sys.argv[1:]
accelerator = Accelerator(cpu=True)
sam = SamModel.from_pretrained(model_dir).eval()
processor = SamImageProcessorPil(
    size={"longest_edge": 24}, pad_size={"height": 24, "width": 24},
    mask_size={"longest_edge": 48}, mask_pad_size={"height": 48, "width": 48},
)
encoded = []
original = sam.get_image_embeddings
sam.get_image_embeddings = lambda pixel_values: encoded.append(len(pixel_values)) or original(pixel_values)
cache = EmbeddingCache.build(
    load_image_mask_folder(data_dir), sam, processor, cache_dir,
    JointAugmentation(POLYP_AUGMENTATION), num_views=3, batch_size=2, accelerator=accelerator,
    storage_dtype=torch.float32,
)
with open(f"{out_dir}/rank{accelerator.process_index}.json", "w") as file:
    report = {"world": accelerator.num_processes, "encoded": sum(encoded), "items": len(cache) * cache.num_views}
    json.dump(report, file)
PartialState().destroy_process_group()  # exiting with the gloo group alive can abort the process
"""


@pytest.mark.slow
def test_two_process_build_gives_one_complete_cache(sam, dataset, image_folder, tmp_path):
    # torchrun + Accelerator(cpu=True): `accelerate launch --cpu --num_processes 2` starts a single process.
    sam.save_pretrained(tmp_path / "sam")
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER_SCRIPT))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(tmp_path / "worker.py"), str(tmp_path / "sam"), str(image_folder), str(tmp_path / "cache"), str(tmp_path),
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = run_command(command, cwd=REPO_ROOT, env=environment, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(report["world"] == 2 and report["items"] == 15 for report in reports)
    assert [report["encoded"] for report in reports] == [8, 7]  # items rank::2, each computed once

    processor, augmentation = make_processor(), JointAugmentation(POLYP_AUGMENTATION)
    loaded = SamModel.from_pretrained(tmp_path / "sam").eval()
    counter = count_encoded_images(loaded)
    cache = build_exact(dataset, loaded, processor, tmp_path / "cache", augmentation, num_views=3)
    assert counter["images"] == 0  # complete, and keyed identically in this process
    assert_cache_matches_fresh(cache, sam, processor, dataset, augmentation)


def test_the_build_logs_its_size_and_refuses_a_disk_without_room(sam, dataset, tmp_path, monkeypatch, caplog):
    processor, augmentation = make_processor(), JointAugmentation(POLYP_AUGMENTATION)
    per_entry = entry_bytes({"image_embeddings": (32, 12, 12)}, torch.float16)
    assert per_entry == 32 * 12 * 12 * 2 + 256
    with caplog.at_level(logging.INFO, logger="autosam_hf.data.embedding_cache"):
        cache = EmbeddingCache.build(dataset, sam, processor, tmp_path, augmentation, num_views=2)
    (message,) = [record.getMessage() for record in caplog.records if "Embedding cache" in record.getMessage()]
    assert "10 entries (5 images x 2 views)" in message and "float16" in message and "10 to compute" in message
    assert all(cache.path(i, v).stat().st_size <= per_entry for i in range(5) for v in range(2))

    full_disk = shutil._ntuple_diskusage(total=10**9, used=10**9 - 100, free=100)
    monkeypatch.setattr(embedding_cache_module.shutil, "disk_usage", lambda path: full_disk)
    EmbeddingCache.build(dataset, sam, processor, tmp_path, augmentation, num_views=2)  # complete: needs nothing
    with pytest.raises(OSError, match="needs 0.00 GiB more but its disk has only 0.00 GiB free.*--cache_dir"):
        EmbeddingCache.build(dataset, sam, processor, tmp_path, augmentation, num_views=3)
    assert not list(cache.directory.glob("*_v2.safetensors"))  # refused before computing anything


def test_real_sam_sizes_per_thousand_images():
    """The README's figure: released SAM stores (256, 64, 64) per view."""
    shapes = {"image_embeddings": (256, 64, 64)}
    assert 1000 * entry_bytes(shapes, torch.float16) / 2**30 == pytest.approx(1.95, abs=0.01)
    assert 1000 * entry_bytes(shapes, torch.float32) / 2**30 == pytest.approx(3.91, abs=0.01)


def test_views_prepared_in_workers_give_the_same_cache(sam, dataset, tmp_path):
    processor, augmentation = make_processor(), JointAugmentation(POLYP_AUGMENTATION, seed=4)
    serial = build_exact(dataset, sam, processor, tmp_path / "serial", augmentation, num_views=2, batch_size=3)
    parallel = build_exact(
        dataset, sam, processor, tmp_path / "parallel", augmentation, num_views=2, batch_size=3, num_workers=2
    )
    for index in range(len(dataset)):
        for view in range(2):
            torch.testing.assert_close(embedding(parallel, index, view), embedding(serial, index, view), rtol=0, atol=0)


def test_files_written_in_a_background_thread_are_the_same_and_its_errors_stop_the_build(
    sam, dataset, tmp_path, monkeypatch
):
    processor, augmentation = make_processor(), JointAugmentation(POLYP_AUGMENTATION, seed=4)
    inline = build_exact(dataset, sam, processor, tmp_path / "inline", augmentation, batch_size=2)
    threaded = build_exact(
        dataset, sam, processor, tmp_path / "threaded", augmentation, batch_size=2, background_writes=True
    )
    for index in range(len(dataset)):
        assert threaded.path(index).read_bytes() == inline.path(index).read_bytes()

    def fail(tensors, path, key):
        raise OSError(f"disk full writing {path.name}")

    monkeypatch.setattr(embedding_cache_module, "_save_atomically", fail)
    with pytest.raises(OSError, match="disk full"):
        build_exact(dataset, sam, processor, tmp_path / "failed", augmentation, batch_size=2, background_writes=True)


def make_autosam_processor() -> AutoSamImageProcessor:
    """The AutoSAM processor of `make_processor`'s SAM canvas: what a device canvas reads its settings from."""
    return AutoSamImageProcessor(**{key: getattr(make_processor(), key) for key in ("size", "pad_size", "mask_size")})


def test_sam_canvases_built_on_the_device_are_a_cache_of_their_own(sam, dataset, tmp_path):
    """`device_canvas=True` (the default on accelerators) forced on the CPU: views of every size go to the encoder
    as uint8, their canvases built there; entries are the encoder's on those canvases, within resampling rounding
    of the processor's canvas ones, in a folder of their own. The processor's canvas keeps its fingerprint."""
    processor, augmentation = make_autosam_processor(), JointAugmentation(POLYP_AUGMENTATION, seed=2)
    default = build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=2, batch_size=3)
    assert build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=2, device_canvas=False).directory == (
        default.directory
    )
    assert "sam_canvas" not in json.loads((default.directory / "config.json").read_text())  # as built before
    counter = count_encoded_images(sam)
    on_device = build_exact(dataset, sam, processor, tmp_path, augmentation, num_views=2, batch_size=3,
                            device_canvas=True)  # fmt: skip
    assert counter["images"] == 10 and on_device.directory != default.directory
    assert json.loads((on_device.directory / "config.json").read_text())["sam_canvas"] == "device"
    for index in range(len(dataset)):
        for view in range(2):
            example = dataset[index]
            image, _ = augmentation(example["image"], example["mask"], index=index, view=view)
            canvas = preprocess_on_device(processor, [image], "cpu", canvases=["sam"])["pixel_values"]
            expected = SamModel.get_image_embeddings(sam, canvas)[0]
            stored, processors = embedding(on_device, index, view), embedding(default, index, view)
            torch.testing.assert_close(stored, expected, atol=FLOAT32_TOLERANCE, rtol=0)
            assert (stored - processors).abs().max() < 0.05 * processors.abs().max()
    with pytest.raises(ValueError, match="device_canvas: SAM's canvas on the device needs an AutoSamImageProcessor"):
        EmbeddingCache.build(dataset, sam, make_processor(), tmp_path, augmentation, num_views=2, device_canvas=True)


def test_the_views_of_a_row_decode_its_image_once(dataset):
    reads = []

    class CountingRows:
        def __getitem__(self, index):
            reads.append(index)
            return dataset[index]

    augmentation = JointAugmentation(POLYP_AUGMENTATION, seed=3)
    items = [(0, 0), (0, 1), (0, 2), (3, 0), (3, 1)]
    views = _SamCanvases(CountingRows(), make_autosam_processor(), augmentation, items, device_canvas=True)
    for position, (index, view) in enumerate(items):
        returned, image = views[position]
        expected, _ = augmentation(dataset[index]["image"], dataset[index]["mask"], index=index, view=view)
        assert returned == position and image.dtype == torch.uint8
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)
    assert reads == [0, 3]
