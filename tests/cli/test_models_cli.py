import yaml

from services.cli.models import COLUMNS, catalog_rows, model_info
from services.factory.catalog import CATALOG
from tests.clirun import posefleet


def test_list_shows_every_catalog_model_and_whether_it_is_built(model_root, tmp_path):
    rows = catalog_rows(model_root)
    assert [r["model"] for r in rows] == list(CATALOG)
    built = {r["model"] for r in rows if not r["built"].startswith("no:")}
    assert {"centernet", "movenet-lightning", "efficientnet-lite0"} <= built  # model_root's
    by_name = {r["model"]: r for r in rows}
    assert by_name["movenet-lightning"]["output"] == "keypoints (coco17)"
    assert by_name["centernet"]["licence"] == "MIT"
    assert by_name["mediapipe-pose-full"]["source"] == "npm @mediapipe/pose@0.5.1675469404"
    assert catalog_rows(tmp_path)[0]["built"] == "no: posefleet models build centernet"
    result = posefleet("models", "list")  # stdout is a pipe: tab-separated, nothing cut
    assert result.returncode == 0
    header, *lines = result.stdout.splitlines()
    assert header.split("\t") == list(COLUMNS)
    assert [line.split("\t")[0] for line in lines] == list(CATALOG)


def test_info_has_the_recipe_pins_and_the_built_model(model_root):
    info = yaml.safe_load(model_info("efficientnet-lite2", model_root))
    assert info["recipe"]["wheels"][1]["sha256"] == CATALOG["efficientnet-lite2"].wheels[1].sha256
    assert info["built"]["labels"] == "1000 labels"
    assert info["built"]["checks"]["export_max_abs_diff"] < 1e-4
    result = posefleet("models", "info", "nope")
    assert result.returncode == 1 and "no model 'nope' in the catalog" in result.stderr
