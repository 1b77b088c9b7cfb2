"""The Slurm back-end without a cluster: profile -> sbatch options, the job script, the config."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from panbinder.errors import PanbinderError
from panbinder.launcher.profiles import Profile
from panbinder.launcher.slurm_cluster import ClusterSpec, slurm_conf
from panbinder.launcher.slurm_job import JobSpec, job_script, keepvars, sbatch_options


@pytest.mark.parametrize(
    ("profile", "options"),
    [
        (Profile("small"), ["--cpus-per-task=1", "--mem=2048M"]),
        (Profile("half", cpu=0.5, memory="512M"), ["--cpus-per-task=1", "--mem=512M"]),
        (
            Profile("gpu", cpu=1.5, memory="1.5G", gpus=2, partition="gpu", time_limit=90),
            ["--cpus-per-task=2", "--mem=1536M", "--gres=gpu:2", "--partition=gpu", "--time=90"],
        ),
    ],
)
def test_profile_maps_to_sbatch_options(profile, options):
    assert sbatch_options(profile) == options


def test_partition_that_is_not_a_name_is_refused():
    with pytest.raises(PanbinderError, match="partition"):
        sbatch_options(Profile("bad", partition="gpu --uid=0"))


def spec(**fields) -> JobSpec:
    base = dict(
        image="127.0.0.1:5000/panbinder/v1-x:abc",
        sbatch=("--cpus-per-task=1", "--mem=400M"),
        mounts=(("/storage/scan one", "/data/scan"),),
        environment=("PANBINDER_DOI",),
        keepvars="JUPYTERHUB_API_TOKEN,PANBINDER_DOI",
        workdir="/var/lib/panbinder-job",
    )
    return JobSpec(**{**base, **fields})


def test_job_script_is_valid_bash_with_hardened_read_only_server(tmp_path: Path):
    script = job_script(spec())
    path = tmp_path / "job.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    assert "#SBATCH --chdir=/var/lib/panbinder-job" in script
    assert "podman system migrate" in script  # recovers from a job killed by scancel
    assert "#SBATCH --mem=400M" in script and "#SBATCH --export=JUPYTERHUB_API_TOKEN,PANBINDER_DOI" in script
    run = next(line for line in script.splitlines() if " run " in line)
    for part in ("--security-opt no-new-privileges", "--cap-drop ALL", "--pids-limit=256", "--network host"):
        assert part in run
    assert "--volume '/storage/scan one:/data/scan:ro'" in run
    assert "--env PANBINDER_DOI" in run and "--env 'JUPYTERHUB_*'" in run
    assert "JUPYTERHUB_API_TOKEN" not in run  # the token comes from the environment, not the command line
    assert '--port="$port"' in run


@pytest.mark.parametrize(
    "fields",
    [
        {"mounts": (("/storage/x", "/home/jovyan"),)},
        {"mounts": (("/storage/x:/etc", "/data/x"),)},
        {"environment": ("BAD NAME",)},
        {"environment": ("JUPYTERHUB_API_URL",)},
        {"output": "/tmp/x\ntouch /tmp/owned"},
        {"sbatch": ("--mem=1G\rtouch /tmp/owned",)},
    ],
)
def test_job_script_refuses_what_it_cannot_pass_safely(fields):
    with pytest.raises(PanbinderError):
        job_script(spec(**fields))


def test_keepvars_lists_only_variable_names():
    assert keepvars(["JUPYTERHUB_API_TOKEN", "A_B", "x;rm"]) == "A_B,JUPYTERHUB_API_TOKEN"


def test_slurm_conf_constrains_memory_and_cores():
    conf = slurm_conf(ClusterSpec(Path("/srv/slurm"), "node1", 2, 20000))
    assert "ProctrackType=proctrack/cgroup" in conf and "DefMemPerCPU=2048" in conf
    assert "NodeName=node1 CPUs=2 RealMemory=20000" in conf
    assert "StateSaveLocation=/srv/slurm/state" in conf


def test_batchspawners_set_anything_endpoint_is_replaced():
    from batchspawner.api import BatchSpawnerAPIHandler
    from jupyterhub.apihandlers import default_handlers

    from panbinder.launcher.slurm_spawner import SlurmPortHandler

    handlers = [h for _, h in default_handlers]
    assert BatchSpawnerAPIHandler not in handlers and SlurmPortHandler in handlers
