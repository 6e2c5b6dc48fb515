"""Sweeps, pure logic: grids and names, sbatch script rendering, Slurm output parsing and resource checks, the
Kubernetes manifest (schema-validated), the backend registry, the task runner's index, dsenv.record and collect,
and the CLI's one-line errors. No daemon, no scheduler."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsenv.cli import main
from dsenv.notebook import find_target
from dsenv.spec import build_spec
from dsenv.sweep import grid as g
from dsenv.sweep import results, state
from dsenv.sweep.backends import Backend, Resources, get_backend, parse_on, register
from dsenv.sweep.backends import slurm as sl
from dsenv.sweep.backends.k8s import render_job, validate
from dsenv.sweep.errors import (BackendNotFound, GridError, ManifestInvalid, NotEnoughResources, SubmitError,
                                UnknownPartition)
from dsenv.sweep.state import Sweep, Task


def make_sweep(tmp_path: Path, n: int = 3, ref: str = "reg:5000/dsenv/x@sha256:" + "ab" * 32) -> Sweep:
    tasks = [Task(i, g.task_name("train", {"lr": 10.0 ** -i}), {"lr": 10.0 ** -i}) for i in range(n)]
    return Sweep(id="train-0123abcd", notebook=str(tmp_path / "nb" / "train.ipynb"), folder=str(tmp_path / "nb"),
                 rel="train.ipynb", out=str(tmp_path / "out"), image={"id": "sha256:" + "cd" * 32, "ref": ref},
                 tasks=tasks, backend="slurm")


# grids and names

def test_axes_parse_typed_like_papermill():
    axes = g.parse_axes(["-p", "lr", "0.1", "1e-3", "-p", "depth", "4", "8", "-p", "name", "a", "-p", "flag", "True",
                         "-p", "off", "-1"])
    assert axes == {"lr": [0.1, 0.001], "depth": [4, 8], "name": ["a"], "flag": [True], "off": [-1]}


@pytest.mark.parametrize("words", [["-p", "1x", "3"], ["-p", "lr"], ["lr", "3"], ["-p", "a", "1", "-p", "a", "2"]])
def test_bad_axes_are_grid_errors(words):
    with pytest.raises(GridError):
        g.parse_axes(words)


def test_expand_is_a_product_last_axis_fastest():
    points = g.expand({"lr": [0.1, 0.01, 0.001], "depth": [4, 8]})
    assert len(points) == 6
    assert points[:2] == [{"lr": 0.1, "depth": 4}, {"lr": 0.1, "depth": 8}]
    assert g.expand({}) == [{}]


def test_grid_file_mapping_and_list(tmp_path):
    f = tmp_path / "grid.yaml"
    f.write_text("lr: [0.1, 0.01]\nepochs: 3\n")
    assert g.read_grid_file(f) == [{"lr": 0.1, "epochs": 3}, {"lr": 0.01, "epochs": 3}]
    f.write_text("- {lr: 0.1}\n- {lr: 0.5, depth: 2}\n")
    sets = g.read_grid_file(f)
    assert sets == [{"lr": 0.1}, {"lr": 0.5, "depth": 2}]
    combined = g.combine(sets, {"seed": [0, 1]})
    assert len(combined) == 4 and combined[1] == {"lr": 0.1, "seed": 1}
    f.write_text("just a string\n")
    with pytest.raises(GridError):
        g.read_grid_file(f)
    with pytest.raises(GridError):
        g.read_grid_file(tmp_path / "missing.yaml")


def test_names_are_stable_hashes_of_parameters():
    a = g.task_name("train", {"lr": 0.1, "depth": 4})
    assert a == g.task_name("train", {"depth": 4, "lr": 0.1})  # key order does not matter
    assert a != g.task_name("train", {"lr": 0.1, "depth": 8})
    assert g.param_hash({"x": 1}) != g.param_hash({"x": 1.0}) and g.param_hash({"x": 1}) != g.param_hash({"x": "1"})
    assert a == "train-" + g.param_hash({"lr": 0.1, "depth": 4}) and len(a) == len("train-") + 12
    assert g.combine(None, {"a": [1, 1, 2]}) == [{"a": 1}, {"a": 2}]  # duplicates dropped


# Slurm

def test_sbatch_script_has_array_resources_init_and_cleanup(tmp_path):
    sweep = make_sweep(tmp_path)
    script = sl.render_script(sweep, [sweep.tasks[0], sweep.tasks[2]],
                              Resources(gpus="2", cpus=4, memory="16g", time="01:00:00", target="gpu"))
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for want in ("#SBATCH --array=0,2", "#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --mem=16384M", "#SBATCH --gres=gpu:2", "#SBATCH --time=01:00:00"):
        assert want in lines
    assert "--init --rm --cidfile" in script and "trap 'cleanup; exit 143' TERM" in script
    assert 'rm -f "$(cat "$cid")"' in script
    assert 'SLURM_JOB_GPUS' in script and 'device=$gpus' in script and "SLURM_CPUS_PER_TASK" in script
    assert "SLURM_MEM_PER_NODE" in script and "sbatch --wait" not in script
    assert f"IMAGE={sweep.image['ref']}" in script and "runner.py &" in script and "wait $!" in script
    if shutil.which("bash"):
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_sbatch_script_without_resources_asks_for_none(tmp_path):
    sweep = make_sweep(tmp_path)
    script = sl.render_script(sweep, sweep.tasks, Resources())
    assert "#SBATCH --array=0-2" in script
    assert not any(x in script for x in ("--gres", "--mem=", "--cpus-per-task", "--partition"))


def test_slurm_gpus_must_be_a_number():
    with pytest.raises(Exception, match="number of GPUs"):
        sl.gpu_count("GPU-1234")


@pytest.mark.parametrize("text,mb", [("16g", 16384), ("512m", 512), ("2G", 2048), ("1024", 1024), ("1.5g", 1536)])
def test_memory_sizes(text, mb):
    assert sl.memory_mb(text) == mb


def test_array_ranges_round_trip():
    assert sl.compress([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert sl.expand_indices("[0-2,5,7-8%2]") == [0, 1, 2, 5, 7, 8]
    assert sl.expand_indices("0-6:3") == [0, 3, 6]


def test_parse_sacct():
    text = ("12_0|COMPLETED|n1|00:00:04|0:0\n12_1|FAILED|n2|00:01:02|1:0\n12_2|CANCELLED by 0|n3|00:00:01|0:15\n"
            "12_[3-4]|PENDING|None assigned|00:00:00|0:0\n12_0.batch|COMPLETED|n1|00:00:04|0:0\n")
    facts = sl.parse_sacct(text)
    assert facts[("12", 0)] == {"state": "COMPLETED", "node": "n1", "elapsed": 4.0, "exit_code": 0, "job_id": "12_0"}
    assert facts[("12", 1)]["exit_code"] == 1 and facts[("12", 1)]["elapsed"] == 62
    assert facts[("12", 2)]["state"] == "CANCELLED" and facts[("12", 2)]["exit_code"] == 143
    assert facts[("12", 4)]["state"] == "PENDING" and facts[("12", 4)]["node"] == ""


def test_parse_scontrol_and_squeue():
    text = ("JobId=13 ArrayJobId=12 ArrayTaskId=1 JobName=x JobState=RUNNING Reason=None ExitCode=0:0 RunTime=00:00:03 "
            "NodeList=n2 BatchHost=n2\n"
            "JobId=12 ArrayJobId=12 ArrayTaskId=2-3 JobState=PENDING Reason=Resources ExitCode=0:0 RunTime=00:00:00 "
            "NodeList=(null)\n"
            "JobId=16 ArrayJobId=12 ArrayTaskId=0 JobState=COMPLETED Reason=None ExitCode=0:0 RunTime=1-00:00:02 "
            "NodeList=n1\n")
    facts = sl.parse_scontrol(text)
    assert facts[("12", 1)]["state"] == "RUNNING" and facts[("12", 1)]["node"] == "n2"
    assert facts[("12", 3)]["state"] == "PENDING" and facts[("12", 3)]["reason"] == "Resources"
    assert facts[("12", 0)]["elapsed"] == 86402
    q = sl.parse_squeue("12_1|RUNNING|n2|0:03|None\n12_[2-3]|PENDING||0:00|Resources\n")
    assert q[("12", 1)]["elapsed"] == 3 and q[("12", 2)]["reason"] == "Resources"


NODES = "debug|n1|2|4000|gpu:1\ndebug|n2|2|4000|gpu:1\ncpu|c1|64|256000|(null)\n"


def test_resource_checks_name_the_limit():
    nodes = sl.parse_nodes(NODES)
    assert nodes[0] == {"partition": "debug", "node": "n1", "cpus": 2, "memory": 4000, "gpus": 1}
    sl.check_fit(nodes, Resources(cpus=2, memory="1g", gpus="1"), ["debug", "cpu"], "debug")
    with pytest.raises(UnknownPartition, match="no Slurm partition named 'gpu'") as e:
        sl.check_fit(nodes, Resources(target="gpu"), ["debug", "cpu"], "debug")
    assert "debug, cpu" in e.value.hint
    with pytest.raises(NotEnoughResources, match="4 CPUs"):
        sl.check_fit(nodes, Resources(cpus=4), ["debug", "cpu"], "debug")
    with pytest.raises(NotEnoughResources, match="GPUs"):
        sl.check_fit(nodes, Resources(gpus="1", target="cpu"), ["debug", "cpu"], "debug")
    sl.check_fit(nodes, Resources(cpus=64, target="cpu"), ["debug", "cpu"], "debug")


def test_sbatch_refusals_become_dsenv_errors():
    assert isinstance(sl.submit_error("sbatch: error: invalid partition specified: foo\n"), UnknownPartition)
    assert isinstance(sl.submit_error("sbatch: error: Batch job submission failed: Requested node configuration is "
                                      "not available\n"), NotEnoughResources)
    assert isinstance(sl.submit_error("sbatch: error: something else"), SubmitError)


def test_slurm_backend_without_sbatch_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Exception) as e:
        get_backend("slurm").check(Resources())
    assert type(e.value).__name__ == "SchedulerMissing" and "sbatch not found" in str(e.value)


# Kubernetes

def test_indexed_job_manifest_validates_against_the_schema(tmp_path):
    sweep = make_sweep(tmp_path, n=6)
    job = render_job(sweep, sweep.tasks[1:], Resources(gpus="1", cpus=2, memory="4g", jobs=2, time="00:30:00"))
    validate(job)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 5 and spec["parallelism"] == 2
    c = spec["template"]["spec"]["containers"][0]
    assert c["image"] == sweep.image["ref"] and "@sha256:" in c["image"]
    assert c["resources"]["limits"] == {"cpu": "2", "memory": "4096Mi", "nvidia.com/gpu": "1"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["DSENV_TASK_FROM"] == "JOB_COMPLETION_INDEX" and env["DSENV_TASK_SUBSET"] == "1,2,3,4,5"
    assert spec["activeDeadlineSeconds"] == 1800
    job["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(ManifestInvalid, match="gpus"):
        validate(job)


# registry of backends

def test_backends_by_name_and_unknown_lists_what_exists(monkeypatch):
    from dsenv.sweep import backends

    monkeypatch.setattr(backends, "_registered", {})
    assert get_backend("local").name == "local" and get_backend("k8s").name == "k8s"
    assert parse_on("slurm:gpu") == ("slurm", "gpu") and parse_on("local") == ("local", None)
    with pytest.raises(BackendNotFound) as e:
        get_backend("pbs")
    assert "local" in e.value.hint and "slurm" in e.value.hint

    class Pbs(Backend):
        name = "pbs"

    register("pbs", Pbs)
    assert isinstance(get_backend("pbs"), Pbs) and "pbs" in backends.available()


# runner, record, collect

def test_runner_task_index_from_scheduler_variables():
    from dsenv.sweep.runner import task_index

    assert task_index({"DSENV_TASK": "4"}) == 4
    assert task_index({"DSENV_TASK_FROM": "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_ID": "3"}) == 3
    assert task_index({"DSENV_TASK_FROM": "JOB_COMPLETION_INDEX", "JOB_COMPLETION_INDEX": "1",
                       "DSENV_TASK_SUBSET": "2,5,7"}) == 5


def test_record_displays_its_mime_type_and_collect_reads_it(monkeypatch, tmp_path):
    import IPython.display

    from dsenv import record as record_module

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    class Scalar:  # what NumPy scalars and arrays offer
        def __init__(self, v):
            self.v = v

        def item(self):
            return self.v

    class Array(Scalar):
        item = None

        def tolist(self):
            return self.v

    assert record_module.record("acc", 0.5) == 0.5
    record_module("n", Scalar(3))  # the module itself is callable: `from dsenv import record`
    assert shown[0]["application/vnd.dsenv.record+json"] == {"name": "acc", "value": 0.5}
    assert shown[1]["application/vnd.dsenv.record+json"]["value"] == 3 and shown[1]["text/plain"] == "n = 3"
    assert record_module.plain({"a": (1, Array([1.5, 2]), float("nan"))}) == {"a": [1, [1.5, 2], "nan"]}
    nb = {"metadata": {"papermill": {"parameters": {"lr": 0.1}}},
          "cells": [{"cell_type": "code", "outputs": [
              {"output_type": "display_data", "data": {record_module.MIME: shown[0][record_module.MIME]}},
              {"output_type": "display_data", "data": {"application/scrapbook.scrap.json+json":
                                                       {"name": "loss", "data": 1.25, "encoder": "json"}}}]}]}
    path = tmp_path / "plain.ipynb"
    path.write_text(json.dumps(nb))
    row = results.row_of(path)
    assert row["parameters"] == {"lr": 0.1} and row["records"] == {"acc": 0.5, "loss": 1.25}
    assert row["provenance"]["state"] == "COMPLETED"
    rows = results.collect(tmp_path)  # a folder of plain papermill outputs
    columns, flat = results.flatten(rows)
    assert columns[:5] == ["task", "name", "lr", "acc", "loss"] and flat[0]["acc"] == 0.5
    csv_text = results.to_csv(rows)
    assert csv_text.splitlines()[0].startswith("task,name,lr,acc,loss,state")


def test_sweep_state_round_trip_and_done_check(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    sweep = make_sweep(tmp_path)
    state.save(sweep)
    assert state.load(sweep.id).tasks == sweep.tasks and state.load(tmp_path / "out").id == sweep.id
    t = sweep.tasks[0]
    assert not state.is_done(sweep, t)
    sweep.output_of(t).write_text(json.dumps({"metadata": {"dsenv": {"provenance": {
        "image_id": sweep.image["id"], "exit_code": 0}}}, "cells": []}))
    assert state.is_done(sweep, t)
    sweep.image["id"] = "sha256:other"
    assert not state.is_done(sweep, t)
    assert sweep.task("2").index == 2 and sweep.task(t.name) == t
    with pytest.raises(Exception, match="no task 9"):
        sweep.task("9")


def test_import_dsenv_is_never_a_requirement(tmp_path, write_notebook):
    write_notebook(tmp_path, ["import numpy\nimport dsenv\nfrom dsenv import record\nrecord('x', 1)"])
    spec = build_spec(find_target(tmp_path))
    assert {r.name for r in spec.requirements} == {"numpy"}


# CLI

def test_cli_sweep_errors_are_one_line(tmp_path, write_notebook, monkeypatch):
    nb = write_notebook(tmp_path, ["x = 1"], name="train.ipynb")
    runner = CliRunner()
    monkeypatch.setenv("PATH", "/nonexistent")
    result = runner.invoke(main, ["sweep", str(nb), "-p", "x", "1", "2", "--on", "slurm", "--registry", "r:5000"])
    assert result.exit_code == 12, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("dsenv: error: sbatch not found") and "hint:" in lines[0]
    result = runner.invoke(main, ["sweep", str(nb), "-p", "x", "--on", "local"])
    assert result.exit_code == 2 and "-p x: no values" in result.output
    result = runner.invoke(main, ["sweep", str(nb), "-p", "x", "1", "--on", "pbs"])
    assert result.exit_code == 12 and "no sweep backend named 'pbs'" in result.output
    result = runner.invoke(main, ["sweep", "status", "nope-00000000"])
    assert result.exit_code == 12 and "no sweep nope-00000000" in result.output
    assert "Traceback" not in result.output


def test_parse_kubectl_pods_of_an_indexed_job():
    from dsenv.sweep.backends.k8s import parse_pods

    pods = {"items": [
        {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z",
                      "annotations": {"batch.kubernetes.io/job-completion-index": "0"}},
         "spec": {"nodeName": "w1"},
         "status": {"phase": "Succeeded", "startTime": "2026-01-01T00:00:01Z", "containerStatuses": [
             {"state": {"terminated": {"exitCode": 0, "finishedAt": "2026-01-01T00:00:11Z"}}}]}},
        {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z",
                      "annotations": {"batch.kubernetes.io/job-completion-index": "1"}},
         "spec": {}, "status": {"phase": "Pending"}}]}
    facts = parse_pods(json.dumps(pods))
    assert facts[0] == {"state": "COMPLETED", "node": "w1", "elapsed": 10.0, "exit_code": 0}
    assert facts[1]["state"] == "PENDING" and facts[1]["exit_code"] is None


def test_runner_gpus_from_slurm_or_the_allocator():
    from dsenv.sweep.runner import gpus_of

    assert gpus_of({"DSENV_GPUS": "0,1"}) == ["0", "1"]
    assert gpus_of({"DSENV_GPUS": "", "NVIDIA_VISIBLE_DEVICES": "GPU-ab12"}) == ["GPU-ab12"]
    assert gpus_of({"NVIDIA_VISIBLE_DEVICES": "void"}) == []


def test_a_changed_grid_keeps_the_indices_queued_tasks_know(tmp_path, monkeypatch):
    from dsenv.sweep.core import stable_tasks

    first = stable_tasks("t", g.expand({"lr": [1, 2, 3]}), {})
    assert [t.index for t in first] == [0, 1, 2]
    second = stable_tasks("t", g.expand({"lr": [0, 2, 3, 4]}), {t.name: t for t in first})
    assert [(t.parameters["lr"], t.index) for t in second] == [(0, 3), (2, 1), (3, 2), (4, 4)]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    sweep = make_sweep(tmp_path)
    sweep.retired = [Task(7, "t-old", {"lr": 9})]
    state.save(sweep)
    loaded = state.load(sweep.id)
    assert loaded.retired == sweep.retired and loaded.tasks == sweep.tasks


def test_repro_parameter_files_are_read_like_grid_files(tmp_path):
    import json

    from dsenv.errors import UsageError
    from dsenv.repro import parse_parameters

    good = tmp_path / "params.yaml"
    good.write_text("alpha: 0.5\nn: 10\n")
    assert parse_parameters([("seed", "3")], [str(good)]) == ["-y", json.dumps({"alpha": 0.5, "n": 10}), "-p", "seed", "3"]
    for text, says in (("a: [1\n", "not valid YAML"), ("- 1\n- 2\n", "must map parameter names")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(UsageError, match=says):
            parse_parameters(None, [str(bad)])
    with pytest.raises(UsageError, match="no such parameters file"):
        parse_parameters(None, [str(tmp_path / "missing.yaml")])
