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
    source: NpmSource
    # tfjs graph model: the model.json member and every member the build reads, with sha256
    graph: str
    members: dict[str, str]
    # tfjs tensor names -> the clean names the ONNX model exposes
    rename: dict[str, str]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    upstream: str = ""

    def describe(self) -> dict[str, Any]:
        return asdict(self)


HUMAN = NpmSource(
    package="@vladmandic/human",
    version="3.3.6",
    tarball_sha256="425e9c51dbbca0c8934362b170cb0d54c2529c11c654b3c03092b16e9d6ad3f7",
    licence="MIT",
)

CATALOG: dict[str, ModelRecipe] = {
    r.name: r
    for r in (
        ModelRecipe(
            name="centernet",
            version="1",
            task="person-detection",
            source=HUMAN,
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
        ),
        ModelRecipe(
            name="movenet-lightning",
            version="1",
            task="pose-estimation",
            source=HUMAN,
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
        ),
    )
}
