from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from bsmamba2_plugin.cli import main
from bsmamba2_plugin.experiments.recipe import load_recipe, parse_overrides
from bsmamba2_plugin.experiments.runner import run_recipe
from bsmamba2_plugin.experiments.stage_marks import SettingsChangedError

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
    again = run_recipe(recipe, work, overrides=parse_overrides(["epochs=3"]), echo=lambda s: None)
    assert [o for _, o in again] == ["skipped", "skipped"]  # the same settings: resumed
    assert (work / "out.txt").read_text() == "x"  # not run twice


def test_changed_set_value_is_not_silently_skipped(tmp_path) -> None:
    """A finished stage whose resolved settings changed is refused, not presented as new."""
    marker = "{workdir}/out.txt"
    path = write_recipe(tmp_path, [
        {"name": "data", "run": ["python", "-c", "import sys; open(sys.argv[1], 'a').write('d')",
                                 "{workdir}/data.txt"]},
        {"name": "train", "run": ["python", "-c",
                                  "import sys; open(sys.argv[1], 'a').write('t')", marker,
                                  "{config}"]},
        {"name": "report", "run": ["python", "-c",
                                   "import sys; open(sys.argv[1], 'a').write(sys.argv[2])",
                                   "{workdir}/report.txt", "{chunks}"]},
    ], vars={"epochs": 3, "chunks": "1"},
        config_overrides={"training": {"num_epochs": "{epochs}"}})
    recipe = load_recipe(path)
    work = tmp_path / "w"
    run_recipe(recipe, work, echo=lambda s: None)
    # a variable that reaches the stage only through the resolved config
    with pytest.raises(SettingsChangedError) as caught:
        run_recipe(recipe, work, overrides={"epochs": "5"}, echo=lambda s: None)
    message = str(caught.value)
    assert "'train'" in message and "'data'" not in message
    assert "--force" in message and "--workdir" in message
    assert "num_epochs" in message  # says what changed
    # nothing was run or rewritten: the workdir still describes its results
    assert (work / "out.txt").read_text() == "t"
    assert yaml.safe_load((work / "config.yaml").read_text())["training"]["num_epochs"] == 3
    # a variable in a later stage's command names that stage only
    with pytest.raises(SettingsChangedError, match="'report'.*\\{chunks\\}.*'1' -> '2'"):
        run_recipe(recipe, work, overrides={"chunks": "2"}, echo=lambda s: None)
    # --force reruns, and the new settings then count as done
    forced = run_recipe(recipe, work, overrides={"chunks": "2"}, force=True, echo=lambda s: None)
    assert [o for _, o in forced] == ["ok", "ok", "ok"]
    assert (work / "report.txt").read_text() == "12"
    again = run_recipe(recipe, work, overrides={"chunks": "2"}, echo=lambda s: None)
    assert [o for _, o in again] == ["skipped", "skipped", "skipped"]


def test_cli_refuses_a_changed_set_value_with_the_fix(tmp_path, capsys) -> None:
    path = write_recipe(tmp_path, [{"name": "only", "run": ["python", "-c", "pass", "{n}"]}],
                        vars={"n": 1})
    work = str(tmp_path / "w")
    assert main(["recipe", "run", str(path), "--workdir", work]) == 0
    assert main(["recipe", "run", str(path), "--workdir", work]) == 0
    assert "skipped" in capsys.readouterr().out
    assert main(["recipe", "run", str(path), "--workdir", work, "--set", "n=2"]) == 2
    err = capsys.readouterr().err
    assert "'only'" in err and "--force" in err and "--workdir" in err


def test_recipe_is_found_by_the_name_recipe_list_prints(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["recipe", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "musdb18hq_vocals_paper" in listed
    # the README's command, verbatim
    assert main(["recipe", "run", "musdb18hq_vocals_paper", "--set", "musdb=/data/MUSDB18HQ",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "/data/MUSDB18HQ/train" in out and not (tmp_path / "runs").exists()
    # the file name and a path keep working
    assert load_recipe("musdb18hq_vocals_paper.yaml").name == "musdb18hq_vocals_paper"
    assert load_recipe(RECIPES[0]).path == RECIPES[0].resolve()


def test_unknown_recipe_lists_the_recipes_and_the_closest_one(capsys) -> None:
    with pytest.raises(FileNotFoundError, match="Did you mean 'musdb18hq_vocals_paper'") as caught:
        load_recipe("musdb18_vocals_paper")
    assert "demo_cpu" in str(caught.value) and "rendered_compare_vs_bs_roformer" in str(caught.value)
    assert main(["recipe", "run", "demo_cpuu", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'demo_cpu'" in err and "musdb18hq_vocals_paper" in err


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


def test_parallel_stages_run_at_the_same_time_and_log_to_files(tmp_path) -> None:
    """Two stages that each wait for the other's file can only finish if they overlap;
    a third, not parallel, runs after both."""
    wait_for = ("import sys, time, pathlib; pathlib.Path(sys.argv[1]).write_text('x'); "
                "print('hello from', sys.argv[1]); deadline = time.time() + 30\n"
                "while not pathlib.Path(sys.argv[2]).exists():\n"
                "    assert time.time() < deadline, 'not run in parallel'; time.sleep(0.05)")
    path = write_recipe(tmp_path, [
        {"name": "a", "parallel": "{together}", "creates": "{workdir}/a",
         "run": ["python", "-c", wait_for, "{workdir}/a", "{workdir}/b"]},
        {"name": "b", "parallel": True, "creates": "{workdir}/b",
         "run": ["python", "-c", wait_for, "{workdir}/b", "{workdir}/a"]},
        {"name": "after", "creates": "{workdir}/c",
         "run": ["python", "-c", "import pathlib, sys; assert pathlib.Path(sys.argv[1]).exists();"
                 " pathlib.Path(sys.argv[2]).write_text('c')", "{workdir}/b", "{workdir}/c"]},
    ], vars={"together": "true"})
    work = tmp_path / "w"
    results = run_recipe(load_recipe(path), work, echo=lambda s: None)
    assert results == [("a", "ok"), ("b", "ok"), ("after", "ok")]
    assert "hello from" in (work / "logs" / "a.log").read_text()
    again = run_recipe(load_recipe(path), work, echo=lambda s: None)
    assert [o for _, o in again] == ["skipped"] * 3


def test_parallel_stages_report_their_own_wall_time(tmp_path) -> None:
    """A quick stage listed before a slow one ends first and says so with its own time."""
    path = write_recipe(tmp_path, [
        {"name": "slow", "parallel": True, "run": ["python", "-c", "import time; time.sleep(3)"]},
        {"name": "quick", "parallel": True, "run": ["python", "-c", "pass"]},
    ])
    lines: list[str] = []
    run_recipe(load_recipe(path), tmp_path / "w", echo=lines.append)
    ended = [line for line in lines if " in " in line and line.endswith(" s")]
    assert [line.split("]")[1].split(":")[0].strip() for line in ended] == ["quick", "slow"]
    seconds = {line.split("]")[1].split(":")[0].strip(): float(line.split(" in ")[1][:-2])
               for line in ended}
    assert seconds["quick"] < 2 <= seconds["slow"], ended


def test_a_failing_parallel_stage_names_itself_and_its_log(tmp_path) -> None:
    path = write_recipe(tmp_path, [
        {"name": "good", "parallel": True, "run": ["python", "-c", "pass"]},
        {"name": "bad", "parallel": True, "run": ["python", "-c", "raise SystemExit(4)"]},
    ])
    with pytest.raises(RuntimeError, match=r"stage 'bad'.*exit code 4.*logs/bad.log"):
        run_recipe(load_recipe(path), tmp_path / "w", echo=lambda s: None)
    assert (tmp_path / "w" / ".stages" / "good.done").exists()  # the other one finished
    bad = write_recipe(tmp_path, [{"name": "x", "parallel": "maybe", "run": ["python", "-c", "1"]}])
    with pytest.raises(ValueError, match="parallel: expected true or false, got 'maybe'"):
        run_recipe(load_recipe(bad), tmp_path / "w2", echo=lambda s: None)


def test_overrides_of_one_config_leave_the_others(tmp_path) -> None:
    """config_overrides reach every config, config_overrides_by_config only the one named
    (after config_overrides, so it wins), with placeholders filled; a name that is not one
    of `configs` is an error naming the valid ones."""
    stages = [{"name": "noop", "run": ["python", "-c", "pass"]}]
    path = tmp_path / "r.yaml"
    raw = {"name": "t", "hardware": "cpu", "expected_duration": "seconds", "seed": 1,
           "configs": {"a": str(TINY), "b": str(TINY)}, "metrics": ["usdr"],
           "stages": stages, "vars": {"recompute": "selective"},
           "config_overrides": {"training": {"num_epochs": 2},
                                "model": {"gradient_checkpointing": False}},
           "config_overrides_by_config": {"a": {"model": {
               "gradient_checkpointing": "{recompute}"}}}}
    path.write_text(yaml.safe_dump(raw))
    work = tmp_path / "w"
    run_recipe(load_recipe(path), work, echo=lambda s: None)
    a, b = (yaml.safe_load((work / f"config_{n}.yaml").read_text()) for n in "ab")
    assert a["model"]["gradient_checkpointing"] == "selective"
    assert b["model"]["gradient_checkpointing"] is False
    assert a["training"]["num_epochs"] == b["training"]["num_epochs"] == 2
    path.write_text(yaml.safe_dump({**raw, "config_overrides_by_config": {"c": {}}}))
    with pytest.raises(KeyError, match=r"config_overrides_by_config.*\(a, b\).*got c"):
        load_recipe(path)
