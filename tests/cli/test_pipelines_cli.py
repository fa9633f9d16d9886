from pathlib import Path

from services.cli.pipelines import layers, render
from services.core.pipeline import load_pipelines
from tests.clirun import posefleet

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_pipelines(ROOT / "pipelines.yaml")


def described(name: str) -> dict:
    return CONFIG.pipelines[name].describe(CONFIG.stages)


def test_layers_put_parallel_branches_side_by_side():
    assert layers(described("scene")) == [["detect", "a", "b"], ["keypoints", "vote"]]
    assert layers(described("pose")) == [["detect"], ["keypoints"]]


def test_show_draws_steps_inputs_and_outputs():
    text = render(described("classify"))
    assert "   step 1 │ a [classifier-a model=efficientnet-lite0] ← image=$request.image" in text
    assert "   step 2 │ vote [combine method=mean top_k=5] ← probs=[a.probs, b.probs]" in text
    assert text.splitlines()[-1].startswith("  outputs │ label ← vote.label")
    result = posefleet("pipelines", "show", "classify", "--file", str(ROOT / "pipelines.yaml"))
    assert result.returncode == 0 and "step 2" in result.stdout, result.stderr
    unknown = posefleet("pipelines", "show", "nope", "--file", str(ROOT / "pipelines.yaml"))
    assert unknown.returncode == 2 and "no pipeline 'nope'" in unknown.stderr


def test_validate_accepts_the_default_file_and_names_the_error(tmp_path):
    ok = posefleet("pipelines", "validate", str(ROOT / "pipelines.yaml"))
    assert ok.returncode == 0 and "OK — 6 stages, 4 pipelines" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "stages:\n  s: {handler: m:C, inputs: [image], outputs: [x]}\n"
        "pipelines:\n  p:\n    nodes:\n      a: {stage: s, inputs: {image: $request.image}}\n"
        "      a: {stage: s, inputs: {image: $request.image}}\n    outputs: {x: a.x}\n"
    )
    result = posefleet("pipelines", "validate", str(bad))
    assert result.returncode == 1
    assert f"{bad}: duplicate key 'a' at line 7" in result.stderr.replace("\n", "")
