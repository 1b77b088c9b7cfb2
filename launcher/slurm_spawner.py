"""Hub-side Slurm back-end: batchspawner's SlurmSpawner with panbinder's launch check and job.

Choose it with ``c.HubProcess.backend`` (its import path,
``panbinder.launcher.slurm_spawner.PanbinderSlurmSpawner``) and set its own traits through
``c.HubProcess.extra_config = {"PanbinderSlurmSpawner": {...}}``. The settings every panbinder
spawner shares (signing key, dataset roots, allowed images, limits, environment) come from the
settings file the portal writes for its Hub (``PANBINDER_HUB_SETTINGS``), as ``hub_config.py``
reads them for the docker spawner.

The job (``slurm_job.py``) runs as ``job_user``, never as the Hub's root: sbatch, squeue and
scancel run through ``runuser`` when the Hub is root. The launch options are checked exactly as
by the docker spawner (``launch_options.py``: signature for this Hub user, not expired, each
dataset confined to the storage roots); the job script is made from the checked values only,
never from the raw ``user_options`` (batchspawner formats those into its script template).

The port: batchspawner's own API handler sets *any* spawner attribute its POST names
(``exec_prefix`` among them, which the Hub runs as a shell command) for whoever holds the
server's token, and the reader's code in the server holds it. It is removed here; the job
posts its port to ``SlurmPortHandler``, which accepts one port, only while that server starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd

from batchspawner import JobStatus, SlurmSpawner, format_template
from batchspawner.api import BatchSpawnerAPIHandler
from jupyterhub.apihandlers import APIHandler, default_handlers
from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Bool, Int, List, Unicode, default

from panbinder.launcher.launch_options import CheckedLaunch, SignedLaunch, refusal
from panbinder.launcher.profiles import Profile

from .slurm_job import JobSpec, job_script, keepvars, sbatch_options

PORT_PATH = "panbinder/slurm-port"  # under the Hub's API
JOB_CHECK_INTERVAL = 2.0  # seconds between checks, while waiting for the port, that the job runs


class SlurmPortHandler(APIHandler):
    """POST {"port": N} with a starting server's own token: where the Hub finds that server."""

    @web.authenticated
    def post(self) -> None:
        token = self.get_auth_token()
        user = self.current_user
        spawners = getattr(user, "spawners", {}) or {}
        spawner = next((s for s in spawners.values() if s.api_token == token), None)
        if not isinstance(spawner, PanbinderSlurmSpawner) or not spawner.awaiting_port:
            raise web.HTTPError(409, "no server of this token is waiting for its port")
        body = self.get_json_body()
        port = body.get("port") if isinstance(body, dict) else None
        if not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65535:
            raise web.HTTPError(400, "port must be a whole number from 1024 to 65535")
        spawner.port = port
        spawner.awaiting_port = False
        self.set_status(201)
        self.finish(json.dumps({"port": port}))


default_handlers[:] = [h for h in default_handlers if h[1] is not BatchSpawnerAPIHandler]
default_handlers.append((rf"/api/{PORT_PATH}", SlurmPortHandler))


def hub_settings() -> dict:
    """The spawner part of the settings the portal wrote for its Hub (empty outside a Hub)."""
    path = os.environ.get("PANBINDER_HUB_SETTINGS", "")
    if not path:
        return {}
    with open(path) as f:
        return json.load(f).get("spawner", {})


class PanbinderSlurmSpawner(SignedLaunch, SlurmSpawner):
    slurm_conf = Unicode(
        "", help="slurm.conf of the cluster (SLURM_CONF for sbatch, squeue, scancel); empty: Slurm's default."
    ).tag(config=True)
    job_user = Unicode(
        "panbinder-job",
        help="Unix user the jobs run as (rootless podman with subordinate ids); used when the Hub runs as root.",
    ).tag(config=True)
    sbatch_extra = List(
        Unicode(), help="More sbatch options for every job, e.g. ['--account=beamline', '--qos=interactive']."
    ).tag(config=True)
    job_prologue = List(
        Unicode(), help="Shell lines the job runs before podman (e.g. 'module load podman')."
    ).tag(config=True)
    podman = Unicode("podman", help="podman command on the compute nodes.").tag(config=True)
    job_output = Unicode(
        "/dev/null",
        help="sbatch --output of each job (%j: the job id), e.g. '/var/log/panbinder/job-%j.log'; "
        "relative paths are in the job user's home.",
    ).tag(config=True)
    registry_tls_verify = Bool(
        False,
        help="Check the registry's TLS certificate when a node pulls an image (off for 127.0.0.1:5000).",
    ).tag(config=True)
    pids_limit = Int(256, help="Process limit of each server's container.").tag(config=True)
    workspace_root = Unicode(
        "",
        help="""Folder on the cluster's shared filesystem (typically the home filesystem) that
        holds signed-in users' workspaces, one folder each (named as the docker volumes'
        suffix, see launcher/workspaces.py), mounted read-write at Workspaces.container_path;
        the quota is that filesystem's own. Empty: no workspaces on this back-end. The job
        user must be able to write there.""",
    ).tag(config=True)
    awaiting_port = False  # True while start() waits for the job's port (SlurmPortHandler)

    @default("exec_prefix")
    def _exec_prefix_default(self) -> str:
        if os.geteuid() == 0 and self.job_user:
            return f"runuser -u {self.job_user} --"
        return ""

    @default("req_homedir")
    def _homedir_default(self) -> str:
        return pwd.getpwnam(self.job_user).pw_dir if self.job_user else os.path.expanduser("~")

    @default("signing_key")
    def _signing_key_default(self) -> str:
        return os.environ.get("PANBINDER_SIGNING_KEY", "")

    @default("allowed_image_prefixes")
    def _prefixes_default(self) -> list[str]:
        return hub_settings().get("allowed_image_prefixes", [])

    @default("storage_roots")
    def _roots_default(self) -> list[str]:
        return hub_settings().get("storage_roots", [])

    @default("manifest_dir")
    def _manifest_default(self) -> str:
        return hub_settings().get("manifest_dir", "")

    @default("environment")
    def _environment_default(self) -> dict:
        return dict(hub_settings().get("environment", {}))

    @default("args")
    def _args_default(self) -> list[str]:
        return list(hub_settings().get("args", []))

    @default("default_url")
    def _default_url_default(self) -> str:
        return hub_settings().get("default_url", "")

    @default("start_timeout")
    def _start_timeout_default(self) -> int:
        return int(hub_settings().get("start_timeout", 300))

    def get_env(self) -> dict:
        """JupyterHub's environment for the server (batchspawner's adds the Hub user's passwd
        entry, which temporary users do not have)."""
        return Spawner.get_env(self)

    async def run_command(self, cmd: str, input: str | None = None, env: dict | None = None) -> str:
        env = dict(os.environ if env is None else env)
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        return await super().run_command(cmd, input=input, env=env)

    def default_profile(self) -> Profile:
        sp = hub_settings()
        return Profile("default", cpu=float(sp.get("cpu_limit", 1.0)), memory=str(sp.get("mem_limit", "2G")))

    def job_spec(self, image: str, checked: CheckedLaunch) -> JobSpec:
        env = self.get_env()
        passed = [k for k in self.environment if not k.startswith("JUPYTERHUB_")]
        return JobSpec(
            image=image,
            sbatch=(*sbatch_options(checked.profile or self.default_profile()), *self.sbatch_extra),
            mounts=tuple((str(m.path), m.spec.container_path) for m in checked.mounts),
            environment=tuple(passed),
            keepvars=keepvars([k for k in env if k.startswith("JUPYTERHUB_") or k in passed]),
            args=tuple(self.get_args()),
            pids_limit=self.pids_limit,
            registry_tls_verify=self.registry_tls_verify,
            port_url_path=PORT_PATH,
            podman=self.podman,
            output=self.job_output,
            workdir=self.req_homedir,
            prologue=tuple(self.job_prologue),
            workspace=self.workspace_folder(checked.workspace),
        )

    def workspace_folder(self, owner: str) -> tuple[str, ...]:
        """(folder on the cluster, container path) of ``owner``'s workspace, or () for none."""
        from .workspaces import Workspaces, workspace_key

        settings = Workspaces(parent=self, log=self.log)
        if not (owner and self.workspace_root and settings.enabled):
            return ()
        return (os.path.join(self.workspace_root, workspace_key(owner)), settings.container_path)

    async def submit_batch_script(self) -> str:
        """batchspawner's submission without its log lines of the raw launch options (their
        signature and signed environment) and of the server's environment (its Hub token)."""
        subvars = self.get_req_subvars()
        cmd = " ".join(
            (format_template(self.exec_prefix, **subvars), format_template(self.batch_submit_cmd, **subvars))
        )
        script = await self._get_batch_script()
        self.log.info("submitting the job of %s: %s", self._log_name, cmd)
        out = await self.run_command(cmd, input=script, env=self.get_env())
        try:
            self.job_id = self.parse_job_id(out)
        except Exception:
            self.log.error("the job of %s was not submitted: %s", self._log_name, out)
            self.job_id = ""
        return self.job_id

    async def _get_batch_script(self, **subvars: object) -> str:
        """The job script from the checked launch (``subvars`` hold the raw user_options)."""
        return job_script(self._job)

    async def start(self) -> tuple[str, int]:
        options = self.user_options or {}
        try:
            checked = self.checked_launch(options, self.user.name)
        except Exception as e:
            raise refusal(self.log, self.user.name, e) from e
        image = options.get("image", "")
        if not isinstance(image, str) or not self.image_allowed(image):
            raise web.HTTPError(400, f"Image {image} is not one this service built")
        self.environment = {**self.environment, **checked.environment}
        self._job = self.job_spec(image, checked)
        self.awaiting_port = True
        started = asyncio.ensure_future(super().start())
        missing = 0  # checks in a row that found no job (one can be a slow squeue)
        try:
            while True:  # batchspawner waits for the port as long as the Hub lets it
                done, _ = await asyncio.wait([started], timeout=JOB_CHECK_INTERVAL)
                if done:
                    return started.result()
                if not (self.awaiting_port and self.job_id):
                    continue
                gone = await self.query_job_status() == JobStatus.NOTFOUND
                missing = missing + 1 if gone else 0
                if missing >= 2:
                    self.log.warning("job %s of %s gone: %s", self.job_id, self.user.name, self.job_status)
                    raise RuntimeError(
                        f"The Slurm job {self.job_id} ended before its server started (the image "
                        "pull or podman failed on the node; PanbinderSlurmSpawner.job_output keeps the job's output)"
                    )
        finally:
            if not started.done():
                started.cancel()
            self.awaiting_port = False
