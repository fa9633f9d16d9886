"""MoveNet Thunder: the larger crop model runs batches of crops."""

import cv2
import numpy as np
import onnxruntime as ort

from services.core.coco import COCO17
from services.core.imaging import decode_image
from services.core.runtime.repository import ModelRepository


def test_thunder_runs_a_batch_of_256_crops(build_catalog, photos):
    entry = ModelRepository(build_catalog("movenet-thunder")).get("movenet-thunder")
    assert entry.spec["preprocessing"]["family"] == "movenet"
    session = ort.InferenceSession(str(entry.path), providers=["CPUExecutionProvider"])
    astronaut = decode_image(photos["astronaut"])  # she fills the frame: the photo is her crop
    crops = np.stack([cv2.resize(astronaut, (256, 256)), np.zeros((256, 256, 3), np.uint8)])
    (out,) = session.run(None, {"input": crops.astype(np.int32)})
    assert out.shape == (2, 1, 17, 3)
    (y, x, score) = out[0, 0].T
    nose, shoulders = (
        COCO17.index("nose"),
        [COCO17.index(f"{s}_shoulder") for s in ("left", "right")],
    )
    assert min(score[[nose, *shoulders]]) > 0.5
    assert y[nose] < y[shoulders].min()  # head above shoulders, normalised to the crop
    assert x[shoulders[0]] > x[shoulders[1]]  # facing the camera: her left is the image's right
