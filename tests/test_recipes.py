from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from bsmamba2_plugin.data.recipes import load_recipe, parse_overrides, run_recipe

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))
TINY = Path(__file__).parent.parent / "configs" / "config_tiny_bsmamba2.yaml"


def test_the_required_recipes_exist() -> None:
    assert {"demo_cpu", "musdb18hq_vocals_paper", "musdb18hq_vocals_bs_roformer_baseline",
            "rendered_compare_vs_bs_roformer"} <= {p.stem for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_and_dry_run_names_existing_configs(path: Path, tmp_path) -> None:
    recipe = load_recipe(path)
    assert recipe.hardware and recipe.expected_duration and recipe.metrics
    lines: list[str] = []
    results = run_recipe(recipe, tmp_path / "w", dry_run=True, echo=lines.append)
    assert [name for name, _ in results] == [s.name for s in recipe.stages]
    assert not (tmp_path / "w").exists()  # a dry run writes nothing
    for source in recipe.configs.values():
        assert source.is_file() and any(str(source) in line for line in lines)
    commands = [shlex.split(line) for line in lines if not line.startswith("#")]
    assert len(commands) == len(recipe.stages)
    resolved = {str(tmp_path / "w" / f"{name}.yaml") for name in recipe.configs}
    for command in commands:
        for flag in ("--config_path", "--config"):
            if flag in command:
                assert command[command.index(flag) + 1] in resolved


def write_recipe(tmp_path: Path, stages: list[dict], **extra) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "hardware": "cpu", "expected_duration": "seconds", "seed": 1,
        "config": str(TINY), "metrics": ["usdr"], "stages": stages, **extra}))
    return path


def test_runner_runs_writes_the_resolved_config_and_resumes(tmp_path) -> None:
    marker = "{workdir}/out.txt"
    path = write_recipe(tmp_path, [
        {"name": "write", "run": ["python", "-c",
                                  "import sys; open(sys.argv[1], 'a').write('x')", marker],
         "creates": marker},
        {"name": "copy", "copy": {"from": marker, "to": "{workdir}/sub/copy.txt"}},
    ], vars={"epochs": 3}, config_overrides={"training": {"num_epochs": "{epochs}"}})
    recipe = load_recipe(path)
    work = tmp_path / "w"
    assert [o for _, o in run_recipe(recipe, work, echo=lambda s: None)] == ["ok", "ok"]
    assert (work / "sub" / "copy.txt").read_text() == "x"
    assert yaml.safe_load((work / "config.yaml").read_text())["training"]["num_epochs"] == 3
    again = run_recipe(recipe, work, overrides=parse_overrides(["epochs=5"]), echo=lambda s: None)
    assert [o for _, o in again] == ["skipped", "skipped"]
    assert (work / "out.txt").read_text() == "x"  # not run twice
    assert yaml.safe_load((work / "config.yaml").read_text())["training"]["num_epochs"] == 5


def test_time_limited_stage_stops_and_counts_when_it_created_its_output(tmp_path) -> None:
    path = write_recipe(tmp_path, [{
        "name": "slow", "time_limit_seconds": "{budget}", "creates": "{workdir}/ckpt",
        "run": ["python", "-c",
                "import sys, time; open(sys.argv[1], 'w').write('c'); time.sleep(60)",
                "{workdir}/ckpt"]}], vars={"budget": 2})
    results = run_recipe(load_recipe(path), tmp_path / "w", echo=lambda s: None)
    assert results == [("slow", "time limit")]


def test_failures_and_bad_placeholders_are_reported(tmp_path) -> None:
    path = write_recipe(tmp_path, [{"name": "fail", "run": ["python", "-c", "raise SystemExit(3)"]}])
    with pytest.raises(RuntimeError, match="exit code 3"):
        run_recipe(load_recipe(path), tmp_path / "w", echo=lambda s: None)
    bad = write_recipe(tmp_path, [{"name": "x", "run": ["python", "{nope}"]}])
    with pytest.raises(KeyError, match="unknown placeholder \\{nope\\}"):
        run_recipe(load_recipe(bad), tmp_path / "w2", dry_run=True, echo=lambda s: None)
    with pytest.raises(KeyError, match="no variable 'epochz'"):
        run_recipe(load_recipe(bad), tmp_path / "w3", overrides={"epochz": "1"}, dry_run=True)


def test_promised_output_must_exist(tmp_path) -> None:
    path = write_recipe(tmp_path, [{"name": "lazy", "run": ["python", "-c", "pass"],
                                    "creates": "{workdir}/never"}])
    with pytest.raises(RuntimeError, match="without creating"):
        run_recipe(load_recipe(path), tmp_path / "w", echo=lambda s: None)
