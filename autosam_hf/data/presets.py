"""Dataset presets: every fact about an AutoSAM dataset, in one place. Training, evaluation and the Hub model cards
read them from here:

- where its splits live (``split_dirs``, ``layout``) and under which folder names a data root holds it
  (``folder_names``);
- its name in tables (``display_name``) and the paper's benchmark groups it belongs to (`BENCHMARKS`);
- its prompt-generator input size, its augmentation (the reference code's, which `--recipe paper` trains with) and
  the share of ``train`` held out for validation where it has no validation split;
- its classes (``id2label``; binary unless set) and, for presets whose classes are derived from instance or binary
  masks (``boundary_width``, e.g. ``monuseg_boundary``), how;
- what a model card says about it (``card``: title, data, terms, citation).

A split is found by trying the preset's candidate folders under ``data_dir`` in order. A candidate holding
``images/`` + ``masks/`` is read with `load_image_mask_folder` (this project's ``../shared/data`` layout, PraNet's
``TrainDataset``/``TestDataset/<Name>``, Kvasir-SEG's original folder); otherwise the preset's native layout is
tried (GlaS's flat Warwick folder, MoNuSeg's XML release, SUN-SEG's ``Frame``/``GT`` folders). Presets with derived
boundary classes read a split's ``masks_instance/`` (instance ids) when it has one, else its ``masks/``.
"""

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import datasets

from .augmentation import GLAS_AUGMENTATION, MONUSEG_AUGMENTATION, POLYP_AUGMENTATION, AugmentationConfig
from .boundary import BOUNDARY_ID2LABEL, DEFAULT_BOUNDARY_WIDTH
from .masks import BINARY, MaskClasses
from .sources import INSTANCE_MASKS_DIR, load_glas_warwick, load_image_mask_folder, load_monuseg_xml, load_sunseg


@dataclass(frozen=True)
class DatasetCard:
    """What the model card of a checkpoint trained on a dataset says about it (rendered into
    ``model_cards/template.md`` by `autosam_hf.hub.model_card`).

    Attributes:
        title: the card's heading, e.g. ``"GlaS (MICCAI 2015 gland segmentation)"``.
        hub_id: the dataset's type in the card's model-index metadata.
        domain: the task, in words ("polyp segmentation in colonoscopy frames").
        tags: Hub tags of the card.
        training_data: what the model was trained on.
        evaluation_datasets: presets whose test results the card lists (measured or "not measured"), in order.
        terms: the data's terms of use as we know them.
        terms_checked: whether ``terms`` were verified at the source (the card warns when not).
        homepage: the dataset's page, if any.
        citation: BibTeX of the dataset.
    """

    title: str
    hub_id: str
    domain: str
    tags: tuple[str, ...]
    training_data: str
    evaluation_datasets: tuple[str, ...]
    terms: str
    terms_checked: bool
    homepage: str | None
    citation: str


@dataclass(frozen=True)
class DatasetPreset:
    """Everything the loaders, the training script, the evaluation and the model cards need to know about one
    dataset.

    Attributes:
        name: the preset's name (`get_preset` key).
        display_name: its name in tables (evaluation reports, model cards), e.g. ``"Kvasir-SEG"``.
        description: one line on the data and the protocol.
        layout: how a split folder without ``images/`` + ``masks/`` is read: ``"pairs"`` (it must have them),
            ``"glas"`` (Warwick flat folder), ``"monuseg"`` (images + XML) or ``"sunseg"`` (``Frame``/``GT``).
        split_dirs: split name → candidate folders relative to ``data_dir``, tried in order.
        folder_names: the dataset's folder under a data root, tried in order: this project's name, then the
            official ones.
        image_size: the prompt generator's input size (Idim: 352 polyps, 256 GlaS, 512 MoNuSeg).
        canvas_rule: how a model trained on it makes its canvases (`AutoSamConfig.canvas_rule`): ``"squash"``
            for the polyp sets, None (the frozen model's own rule, letterbox for SAM) for the others.
        augmentation: the training augmentation (the reference code's settings).
        card: what a model card says about it.
        is_video: examples carry ``case``/``frame`` columns (split train/val by case; scored per case).
        val_fraction: the share of ``train`` held out as validation where the dataset has no validation split
            (`train_val_split`).
        id2label: the classes a model trained on it predicts (0 = background); None: binary.
        boundary_width: derive {background, interior, boundary} from instance or binary masks, with a ring of this
            many pixels at the original resolution (`autosam_hf.data.boundary`); None: masks are read as they are.
    """

    name: str
    display_name: str
    description: str
    layout: str
    split_dirs: Mapping[str, tuple[str, ...]]
    folder_names: tuple[str, ...]
    image_size: int
    augmentation: AugmentationConfig
    card: DatasetCard
    is_video: bool = False
    val_fraction: float = 0.1
    id2label: Mapping[int, str] | None = None
    boundary_width: int | None = None
    canvas_rule: str | None = None

    def __post_init__(self):
        # Read-only, like the rest of the frozen preset (the PRESETS entries are shared by every caller).
        object.__setattr__(self, "split_dirs", MappingProxyType(dict(self.split_dirs)))
        if self.id2label is not None:
            object.__setattr__(self, "id2label", MappingProxyType(dict(self.id2label)))

    def mask_classes(self, num_labels: int | None = None, boundary_width: int | None = None) -> MaskClasses:
        """What its masks become: derived boundary classes (ring `boundary_width`, default the preset's) for
        boundary presets; else label maps of `num_labels` labels, binary when None or 2."""
        if self.boundary_width is not None:
            if num_labels not in (None, len(BOUNDARY_ID2LABEL)):
                raise ValueError(f"preset {self.name!r} has {len(BOUNDARY_ID2LABEL)} labels, not {num_labels}")
            return MaskClasses.boundary(boundary_width or self.boundary_width)
        if boundary_width is not None:
            raise ValueError(f"boundary_width: preset {self.name!r} derives no boundary classes")
        return MaskClasses(num_labels) if num_labels else BINARY

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.split_dirs)

    @property
    def has_val_split(self) -> bool:
        return "val" in self.split_dirs


# ---------------------------------------------------------------------------------------------- model card facts
_POLYP_DOMAIN = "polyp segmentation in colonoscopy frames"
_POLYP_TAGS = ("polyp-segmentation", "colonoscopy", "endoscopy")
_PRANET_TRAINING = (
    "under the PraNet protocol the model is trained on 900 Kvasir-SEG + 550 CVC-ClinicDB frames and evaluated on"
)
_RECORDED_DATA = (
    'The datasets actually used for this checkpoint are listed under "Training" when the training run recorded them.'
)

KVASIR_CARD = DatasetCard(
    title="Kvasir-SEG",
    hub_id="kvasir-seg",
    domain=_POLYP_DOMAIN,
    tags=_POLYP_TAGS,
    training_data=(
        "Kvasir-SEG (Jha et al., MMM 2020): 1,000 colonoscopy frames with polyp masks. This project's copy uses "
        "EffiSegNet's 800/100/100 train/val/test split at 352x352; the PraNet protocol instead trains on 900 "
        "Kvasir-SEG + 550 CVC-ClinicDB frames."
    ),
    evaluation_datasets=("kvasir", "clinicdb", "colondb", "etis", "cvc300"),
    terms=(
        "From the dataset authors' README (DebeshJha/Kvasir-SEG): no prior permission is needed for academic and "
        "research use; commercial use needs prior permission from the authors. Publications must cite Jha et al. "
        "(MMM 2020)."
    ),
    terms_checked=True,
    homepage="https://datasets.simula.no/kvasir-seg/",
    citation=r"""@inproceedings{jha2020kvasir,
  title={Kvasir-SEG: A Segmented Polyp Dataset},
  author={Jha, Debesh and Smedsrud, Pia H. and Riegler, Michael A. and Halvorsen, P{\aa}l and de Lange, Thomas and
          Johansen, Dag and Johansen, H{\aa}vard D.},
  booktitle={MultiMedia Modeling (MMM)},
  year={2020}
}""",
)

CLINICDB_CARD = DatasetCard(
    title="CVC-ClinicDB",
    hub_id="cvc-clinicdb",
    domain=_POLYP_DOMAIN,
    tags=_POLYP_TAGS,
    training_data=(
        "The PraNet polyp training set: 900 Kvasir-SEG + 550 CVC-ClinicDB frames (CVC-ClinicDB: 612 frames, Bernal "
        "et al. 2015), with 62 CVC-ClinicDB frames held out as the test set."
    ),
    evaluation_datasets=("clinicdb", "kvasir", "colondb", "etis", "cvc300"),
    terms=(
        "Published terms as we know them (CVC-ClinicDB page of the MICCAI 2015 polyp challenge): use is restricted "
        "to research and educational purposes, commercial use is not allowed without permission, and publications "
        "must cite Bernal et al. (2015). These terms have not been verified for this release and must be checked on "
        "the dataset's official page before the weights are used or redistributed."
    ),
    terms_checked=False,
    homepage="https://polyp.grand-challenge.org/CVCClinicDB/",
    citation=r"""@article{bernal2015wm,
  title={WM-DOVA maps for accurate polyp highlighting in colonoscopy: Validation vs. saliency maps from physicians},
  author={Bernal, Jorge and S{\'a}nchez, F. Javier and Fern{\'a}ndez-Esparrach, Gloria and Gil, Debora and
          Rodr{\'i}guez, Cristina and Vilari{\~n}o, Fernando},
  journal={Computerized Medical Imaging and Graphics},
  volume={43},
  pages={99--111},
  year={2015}
}""",
)

COLONDB_CARD = DatasetCard(
    title="CVC-ColonDB",
    hub_id="cvc-colondb",
    domain=_POLYP_DOMAIN,
    tags=_POLYP_TAGS,
    training_data=(
        f"CVC-ColonDB (380 frames, Bernal et al. 2012) is a test-only set: {_PRANET_TRAINING} CVC-ColonDB unseen, "
        f"which measures generalisation to another centre and device. {_RECORDED_DATA}"
    ),
    evaluation_datasets=("colondb", "kvasir", "clinicdb", "etis", "cvc300"),
    terms=(
        'No licence is stated by the copy this project evaluated on (its README says "License: Unknown"). The terms '
        "of the original release must be checked with its authors (Computer Vision Center, Barcelona) before the "
        "weights are used or redistributed. Publications must cite Bernal et al. (Pattern Recognition 2012)."
    ),
    terms_checked=False,
    homepage=None,
    citation=r"""@article{bernal2012towards,
  title={Towards automatic polyp detection with a polyp appearance model},
  author={Bernal, Jorge and S{\'a}nchez, Javier and Vilari{\~n}o, Fernando},
  journal={Pattern Recognition},
  volume={45},
  number={9},
  pages={3166--3182},
  year={2012}
}""",
)

ETIS_CARD = DatasetCard(
    title="ETIS-LaribPolypDB",
    hub_id="etis-laribpolypdb",
    domain=_POLYP_DOMAIN,
    tags=_POLYP_TAGS,
    training_data=(
        f"ETIS-LaribPolypDB (196 frames at 1225x966, Silva et al. 2014) is a test-only set: {_PRANET_TRAINING} ETIS "
        f"unseen; its polyps are small and it is the hardest of the polyp benchmarks. {_RECORDED_DATA}"
    ),
    evaluation_datasets=("etis", "kvasir", "clinicdb", "colondb", "cvc300"),
    terms=(
        'No licence is stated by the copy this project evaluated on (its README says "License: Unknown"); another '
        "repository notes that the images are property of Lariboisiere Hospital-APHP and ETIS/ENSEA and the ground "
        "truth of ETIS/ENSEA. The terms must be checked with the owners before the weights are used or "
        "redistributed. Publications must cite Silva et al. (IJCARS 2014)."
    ),
    terms_checked=False,
    homepage="https://polyp.grand-challenge.org/EtisLarib/",
    citation=r"""@article{silva2014toward,
  title={Toward embedded detection of polyps in WCE images for early diagnosis of colorectal cancer},
  author={Silva, Juan and Histace, Aymeric and Romain, Olivier and Dray, Xavier and Granado, Bertrand},
  journal={International Journal of Computer Assisted Radiology and Surgery},
  volume={9},
  number={2},
  pages={283--293},
  year={2014}
}""",
)

CVC300_CARD = DatasetCard(
    title="CVC-300 (EndoScene test)",
    hub_id="cvc-300",
    domain=_POLYP_DOMAIN,
    tags=_POLYP_TAGS,
    training_data=(
        "CVC-300 (the 60 test frames of the CVC-300 part of EndoScene, Vazquez et al. 2017) is a test-only set: "
        f"{_PRANET_TRAINING} CVC-300 unseen. {_RECORDED_DATA}"
    ),
    evaluation_datasets=("cvc300", "kvasir", "clinicdb", "colondb", "etis"),
    terms=(
        "Published terms as we know them: EndoScene/CVC-300 was released by the Computer Vision Center (Barcelona) "
        "for research use, citing Vazquez et al. (2017); commercial use is not granted. These terms have not been "
        "verified for this release and must be checked with the dataset's authors before the weights are used or "
        "redistributed."
    ),
    terms_checked=False,
    homepage=None,
    citation=r"""@article{vazquez2017benchmark,
  title={A Benchmark for Endoluminal Scene Segmentation of Colonoscopy Images},
  author={V{\'a}zquez, David and Bernal, Jorge and S{\'a}nchez, F. Javier and Fern{\'a}ndez-Esparrach, Gloria and
          L{\'o}pez, Antonio M. and Romero, Adriana and Drozdzal, Michal and Courville, Aaron},
  journal={Journal of Healthcare Engineering},
  volume={2017},
  pages={4037190},
  year={2017}
}""",
)

GLAS_CARD = DatasetCard(
    title="GlaS (MICCAI 2015 gland segmentation)",
    hub_id="glas",
    domain="gland segmentation in H&E colon histology",
    tags=("gland-segmentation", "histopathology", "h-and-e"),
    training_data=(
        "GlaS@MICCAI 2015 (Sirinukunwattana et al. 2017): 165 H&E-stained colon histology images (85 train, 80 test "
        "= testA 60 + testB 20), gland versus background masks (gland instances merged)."
    ),
    evaluation_datasets=("glas",),
    terms=(
        'The challenge states the data are "provided for research purposes only. Commercial uses are not allowed", '
        "and asks publications to cite Sirinukunwattana et al. (MedIA 2017) and Sirinukunwattana et al. (IEEE TMI "
        "2015)."
    ),
    terms_checked=True,
    homepage="https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest/",
    citation=r"""@article{sirinukunwattana2017gland,
  title={Gland Segmentation in Colon Histology Images: The GlaS Challenge Contest},
  author={Sirinukunwattana, Korsuk and Pluim, Josien P. W. and Chen, Hao and others},
  journal={Medical Image Analysis},
  volume={35},
  pages={489--502},
  year={2017}
}""",
)

MONUSEG_CARD = DatasetCard(
    title="MoNuSeg (multi-organ nucleus segmentation)",
    hub_id="monuseg",
    domain="nucleus segmentation in H&E histology (multiple organs)",
    tags=("nucleus-segmentation", "histopathology", "h-and-e"),
    training_data=(
        "MoNuSeg (Kumar et al. 2017, 2019): 1000x1000 H&E tiles from TCGA with nucleus annotations, binarised to "
        "nucleus versus background. This project's copy has 30 of the 37 official training tiles and the 14 "
        "official test tiles; validation is a seeded part of train."
    ),
    evaluation_datasets=("monuseg",),
    terms=(
        "Third-party mirrors state CC BY-NC-SA 4.0 (attribution, non-commercial, share-alike); this was not verified "
        "on the official challenge page and must be checked there. The images derive from TCGA. Publications must "
        "cite Kumar et al. (IEEE TMI 2017) and Kumar et al. (IEEE TMI 2019)."
    ),
    terms_checked=False,
    homepage="https://monuseg.grand-challenge.org/",
    citation=r"""@article{kumar2017dataset,
  title={A Dataset and a Technique for Generalized Nuclear Segmentation for Computational Pathology},
  author={Kumar, Neeraj and Verma, Ruchika and Sharma, Sanuj and Bhargava, Surabhi and Vahadane, Abhishek and Sethi,
          Amit},
  journal={IEEE Transactions on Medical Imaging},
  volume={36},
  number={7},
  pages={1550--1560},
  year={2017}
}
@article{kumar2019multi,
  title={A Multi-Organ Nucleus Segmentation Challenge},
  author={Kumar, Neeraj and Verma, Ruchika and Anand, Deepak and others},
  journal={IEEE Transactions on Medical Imaging},
  volume={39},
  number={5},
  pages={1380--1391},
  year={2020}
}""",
)

MONUSEG_BOUNDARY_CARD = dataclasses.replace(
    MONUSEG_CARD,
    title="MoNuSeg (multi-organ nucleus segmentation), nucleus interior and boundary",
    domain="nucleus segmentation in H&E histology (multiple organs), with a boundary class that separates nuclei",
    tags=(*MONUSEG_CARD.tags, "instance-segmentation"),
    training_data=(
        "MoNuSeg (Kumar et al. 2017, 2019): 1000x1000 H&E tiles from TCGA, three classes: background, nucleus "
        "interior and nucleus boundary (a ring of a few pixels inside each nucleus). On this project's training "
        "tiles (30 of the 37 official ones, binary masks) the ring is the inner boundary of each connected component "
        "of the mask; on the 14 official test tiles it is each nucleus's own boundary, from the instance masks "
        "rasterised from the official XML, so touching nuclei are separated. Validation is a seeded part of train."
    ),
    evaluation_datasets=("monuseg_boundary",),
)

# Both SUN-SEG presets train on SUN-SEG's TrainDataset: one card.
SUNSEG_CARD = DatasetCard(
    title="SUN-SEG (video polyp segmentation)",
    hub_id="sun-seg",
    domain="polyp segmentation in colonoscopy videos (frame by frame)",
    tags=("polyp-segmentation", "colonoscopy", "video-polyp-segmentation"),
    training_data=(
        "SUN-SEG (Ji et al. 2022): pixel-level polyp masks for frames of the SUN colonoscopy video database; trained "
        "on its TrainDataset and tested on TestEasyDataset and TestHardDataset (Unseen cases). AutoSAM segments each "
        "frame independently (no temporal model)."
    ),
    evaluation_datasets=("sunseg_easy", "sunseg_hard"),
    terms=(
        "Published terms as we know them: the SUN database (Misawa et al. 2021) is released on application, for "
        "non-commercial research, under an agreement with its owners (Showa University and Nagoya University); "
        "SUN-SEG's annotations are distributed with the same restriction. These terms have not been verified for "
        "this release and must be checked before the weights are used or redistributed."
    ),
    terms_checked=False,
    homepage="https://github.com/GewelsJI/VPS",
    citation=r"""@article{ji2022video,
  title={Video Polyp Segmentation: A Deep Learning Perspective},
  author={Ji, Ge-Peng and Xiao, Guobao and Chou, Yu-Cheng and Fan, Deng-Ping and Zhao, Kai and Chen, Geng and Van
          Gool, Luc},
  journal={Machine Intelligence Research},
  volume={19},
  number={6},
  pages={531--549},
  year={2022}
}
@article{misawa2021development,
  title={Development of a computer-aided detection system for colonoscopy and a publicly accessible large colonoscopy
         video database (with video)},
  author={Misawa, Masashi and Kudo, Shin-ei and Mori, Yuichi and others},
  journal={Gastrointestinal Endoscopy},
  volume={93},
  number={4},
  pages={960--967},
  year={2021}
}""",
)


# ---------------------------------------------------------------------------------------------- presets
# The polyp benchmarks' training copies (PraNet's TrainDataset, this project's Kvasir-SEG) come squashed to 352², so a
# model trained on them learns squashed polyps: a non-square test image must be squashed the same way, not
# letterboxed (the field's protocol, PraNet's TestDataset, squashes too).
POLYP_CANVAS_RULE = "squash"


def _polyp_test_preset(
    name: str, display_name: str, pranet_name: str, folder_names: tuple[str, ...], description: str, card
) -> DatasetPreset:
    return DatasetPreset(
        name=name,
        display_name=display_name,
        description=description,
        layout="pairs",
        split_dirs={"test": ("test", "test_subset", f"TestDataset/{pranet_name}")},
        folder_names=folder_names,
        image_size=352,
        augmentation=POLYP_AUGMENTATION,
        canvas_rule=POLYP_CANVAS_RULE,
        card=card,
    )


def _sunseg_preset(name: str, display_name: str, test_root: str) -> DatasetPreset:
    return DatasetPreset(
        name=name,
        display_name=display_name,
        description=f"SUN-SEG video polyps; test = {test_root}/Unseen (also test_seen), train = TrainDataset.",
        layout="sunseg",
        split_dirs={
            "train": ("TrainDataset", "train"),
            "test": (f"{test_root}/Unseen", test_root, "test"),
            "test_seen": (f"{test_root}/Seen",),
        },
        folder_names=("sunseg", "SUN-SEG"),
        image_size=352,
        augmentation=POLYP_AUGMENTATION,
        canvas_rule=POLYP_CANVAS_RULE,
        card=SUNSEG_CARD,
        is_video=True,
    )


MONUSEG = DatasetPreset(
    name="monuseg",
    display_name="MoNuSeg",
    description="MoNuSeg nuclei: train 30 (official 37), test 14; images/masks or the XML release.",
    layout="monuseg",
    split_dirs={
        "train": ("train", "MoNuSegTrainingData", "MoNuSeg 2018 Training Data"),
        "test": ("test", "MoNuSegTestData"),
    },
    folder_names=("monuseg", "MoNuSeg"),
    image_size=512,
    augmentation=MONUSEG_AUGMENTATION,
    card=MONUSEG_CARD,
)

PRESETS: dict[str, DatasetPreset] = {
    preset.name: preset
    for preset in [
        DatasetPreset(
            name="kvasir",
            display_name="Kvasir-SEG",
            description=(
                "Kvasir-SEG polyps. This project's copy: train/val/test 800/100/100; PraNet protocol: train = "
                "TrainDataset (900 Kvasir + 550 ClinicDB), test = TestDataset/Kvasir; 'all' = Kvasir-SEG's own folder."
            ),
            layout="pairs",
            split_dirs={
                "train": ("train", "TrainDataset"),
                "val": ("val",),
                "test": ("test", "TestDataset/Kvasir"),
                "original_resolution_samples": ("original_resolution_samples",),
                "all": ("Kvasir-SEG", "."),
            },
            folder_names=("kvasir", "Kvasir-SEG", "Kvasir"),
            image_size=352,
            augmentation=POLYP_AUGMENTATION,
            canvas_rule=POLYP_CANVAS_RULE,
            card=KVASIR_CARD,
        ),
        DatasetPreset(
            name="clinicdb",
            display_name="CVC-ClinicDB",
            description="CVC-ClinicDB polyps, PraNet protocol: train = TrainDataset, test = TestDataset/CVC-ClinicDB.",
            layout="pairs",
            split_dirs={
                "train": ("train", "TrainDataset"),
                "test": ("test", "test_subset", "TestDataset/CVC-ClinicDB"),
            },
            folder_names=("clinicdb", "cvc_clinicdb", "CVC-ClinicDB"),
            image_size=352,
            augmentation=POLYP_AUGMENTATION,
            canvas_rule=POLYP_CANVAS_RULE,
            card=CLINICDB_CARD,
        ),
        _polyp_test_preset(
            "colondb",
            "CVC-ColonDB",
            "CVC-ColonDB",
            ("colondb", "cvc_colondb", "CVC-ColonDB"),
            "CVC-ColonDB polyps (test only; trained on kvasir/clinicdb).",
            COLONDB_CARD,
        ),
        _polyp_test_preset(
            "etis",
            "ETIS-LaribPolypDB",
            "ETIS-LaribPolypDB",
            ("etis", "etis_laribpolypdb", "ETIS-LaribPolypDB"),
            "ETIS-LaribPolypDB polyps (test only).",
            ETIS_CARD,
        ),
        _polyp_test_preset(
            "cvc300",
            "CVC-300",
            "CVC-300",
            ("cvc300", "cvc_300", "CVC-300"),
            "CVC-300 (EndoScene test) polyps (test only).",
            CVC300_CARD,
        ),
        DatasetPreset(
            name="glas",
            display_name="GlaS",
            description="GlaS colon glands: train 85, test = testA + testB (80); Warwick flat folder or images/masks.",
            layout="glas",
            split_dirs={
                "train": ("train", "."),
                "test": ("test", "test_subset", "."),
                "testA": ("testA", "."),
                "testB": ("testB", "."),
            },
            folder_names=("glas", "GlaS", "Warwick QU Dataset (Released 2016_07_08)"),
            image_size=256,
            augmentation=GLAS_AUGMENTATION,
            card=GLAS_CARD,
        ),
        MONUSEG,
        # The same data and folders, with classes derived from the nuclei: background, interior, boundary.
        dataclasses.replace(
            MONUSEG,
            name="monuseg_boundary",
            display_name="MoNuSeg boundary",
            description=(
                "MoNuSeg nuclei as 3 classes (background, interior, boundary ring): train from the binary masks' "
                "connected components, test from masks_instance (touching nuclei separated)."
            ),
            card=MONUSEG_BOUNDARY_CARD,
            id2label=BOUNDARY_ID2LABEL,
            boundary_width=DEFAULT_BOUNDARY_WIDTH,
        ),
        _sunseg_preset("sunseg_easy", "SUN-SEG Easy", "TestEasyDataset"),
        _sunseg_preset("sunseg_hard", "SUN-SEG Hard", "TestHardDataset"),
    ]
}

# The paper's tables, as groups of presets (table column order).
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "polyps": ("kvasir", "clinicdb", "colondb", "etis"),
    "histology": ("glas", "monuseg"),
    "sunseg": ("sunseg_easy", "sunseg_hard"),
}


def get_preset(name: str) -> DatasetPreset:
    """Return the preset called ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown dataset preset {name!r}. Known presets: {', '.join(PRESETS)}.")
    return PRESETS[name]


def _read_native_layout(
    preset: DatasetPreset,
    folder: Path,
    split: str,
    num_workers: int | None,
    classes: MaskClasses,
    max_samples: int | None,
) -> datasets.Dataset | None:
    """Read ``folder`` with the preset's own layout, or return None if it does not look like one."""
    options = {"num_workers": num_workers, "classes": classes, "max_samples": max_samples}
    if preset.layout == "glas" and any(folder.glob("*_anno.bmp")):
        return load_glas_warwick(folder, split, **options)
    if preset.layout == "monuseg" and (any(folder.glob("*.xml")) or (folder / "Annotations").is_dir()):
        return load_monuseg_xml(folder, **options)
    if preset.layout == "sunseg" and (folder / "Frame").is_dir():
        return load_sunseg(folder, **options)
    return None


def load_preset_dataset(
    name: str,
    split: str,
    data_dir: str | os.PathLike,
    num_workers: int | None = None,
    classes: MaskClasses | None = None,
    max_samples: int | None = None,
) -> datasets.Dataset:
    """Load one split of a preset's dataset, e.g. ``load_preset_dataset("kvasir", "train", "../shared/data/kvasir")``.

    Args:
        name: a preset name (`PRESETS`).
        split: one of the preset's ``split_dirs`` keys. Sets without ``"val"`` use `train_val_split` on ``"train"``.
        data_dir: the dataset's root folder.
        num_workers: decoding threads for validation.
        classes: what the masks become (`DatasetPreset.mask_classes`); default the preset's own (binary, or its
            derived boundary classes).
        max_samples: only the first N examples of the split (in its order; video frames stay in order), the others
            not even decoded: `dataset.select(range(min(N, len(dataset))))` of the whole split, without reading it all.

    Returns:
        `datasets.Dataset` with columns ``id``, ``image``, ``mask`` (0/1, or 0..K) [, ``case``, ``frame`` for
        SUN-SEG; ``instances`` for derived boundary classes].

    Raises:
        ValueError: unknown preset or split, or invalid data (see `dataset_builder.build_dataset`).
        FileNotFoundError: ``data_dir`` or every candidate folder of the split is missing.
    """
    preset = get_preset(name)
    if split not in preset.split_dirs:
        hint = " Use train_val_split() on 'train' for a validation set." if split in ("val", "validation") else ""
        raise ValueError(f"Preset {name!r} has no split {split!r}; its splits are {list(preset.split_dirs)}.{hint}")
    classes = classes or preset.mask_classes()
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data_dir {data_dir} does not exist or is not a folder.")
    for candidate in preset.split_dirs[split]:
        folder = data_dir / candidate
        if not folder.is_dir():
            continue
        if (folder / "images").is_dir() and (folder / "masks").is_dir():
            # Derived boundary classes separate touching nuclei only where each nucleus has its own id.
            instance_masks = classes.boundary_width is not None and (folder / INSTANCE_MASKS_DIR).is_dir()
            masks_dir = INSTANCE_MASKS_DIR if instance_masks else "masks"
            return load_image_mask_folder(
                folder, masks_dir=masks_dir, num_workers=num_workers, classes=classes, max_samples=max_samples
            )
        dataset = _read_native_layout(preset, folder, split, num_workers, classes, max_samples)
        if dataset is not None:
            return dataset
    tried = ", ".join(str(data_dir / candidate) for candidate in preset.split_dirs[split])
    raise FileNotFoundError(f"No {split!r} split of preset {name!r} under {data_dir}; looked for: {tried}.")
