"""Jobs of the appliance server: what the management service creates and the SDK service uses.

A client context (``SdkCompiler``, ``SdkRuntime``, ``SdkLauncher``) is one *job*: it starts
with ``InitSdkCompileJob``/``InitSdkExecuteJob`` on the management service and ends with
``CancelJobV2``. In between:

- the SDK service's calls of the job are routed to it by the HTTP/2 authority the client sends
  (``<job id>.<AUTHORITY_DOMAIN>``, handed out by ``PollIngressV2``);
- the client keeps a heartbeat stream (``HeartbeatV2``) open on its management connection.
  The first heartbeat message, which names the job, comes only after ten seconds, so a stream
  is attached to the oldest job of the same connection (peer address) that has none yet; when
  the job ends the stream is closed, so the client's context exits at once;
- a job *ends* when it is cancelled, when its heartbeat stream or one of its SDK calls breaks
  off because the client went away (a killed process), or when the server stops. Ending frees
  the job's runtime (the simulated device) and deletes the job's working directory.

A job's SDK calls are serialized by the job's lock; simulator work (compiling, loading,
commands) is serialized server-wide by :data:`SIM_LOCK`, since the simulator shares caches
between devices. Several clients are served at once, one simulation step at a time.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime_session import RuntimeSession

log = logging.getLogger(__name__)

#: Authorities handed to clients are ``<job id>.<AUTHORITY_DOMAIN>``.
AUTHORITY_DOMAIN = "waferscale.local"

#: Serializes all simulator and compiler work of the server (see the module docstring).
SIM_LOCK = threading.RLock()

COMPILE, EXECUTE = "compile", "execute"


@dataclass(eq=False)
class Job:
    """One client context. ``directory`` is the job's working directory (execute jobs: the
    uploaded artifacts; compile jobs use the shared compile cache instead)."""
    id: str
    kind: str
    peer: str
    directory: Path
    lock: threading.RLock = field(default_factory=threading.RLock)
    ended: threading.Event = field(default_factory=threading.Event)
    end_reason: str = ""
    heartbeat_attached: bool = False
    runtime: RuntimeSession | None = None

    @property
    def authority(self) -> str:
        return f"{self.id}.{AUTHORITY_DOMAIN}"

    @property
    def active(self) -> bool:
        return not self.ended.is_set()


class JobTable:
    """The server's jobs, created under ``root/jobs/``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    def create(self, kind: str, peer: str) -> Job:
        job_id = f"wsjob-{next(self._counter):04d}-{secrets.token_hex(3)}"
        directory = self.root / "jobs" / job_id
        directory.mkdir(parents=True)
        job = Job(job_id, kind, peer, directory)
        with self._lock:
            self._jobs[job_id] = job
        log.info("job %s (%s) created for %s", job_id, kind, peer)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def by_authority(self, authority: str) -> Job | None:
        """The job whose authority is ``authority`` (ended jobs are kept, without runtime or
        directory, so that a late call gets a clear error)."""
        job_id, _, domain = authority.partition(".")
        if domain.split(":")[0] != AUTHORITY_DOMAIN:
            return None
        return self.get(job_id)

    def attach_heartbeat(self, peer: str) -> Job | None:
        """The oldest active job of ``peer`` without a heartbeat stream, now marked as having
        one; None if there is none."""
        with self._lock:
            for job in self._jobs.values():
                if job.peer == peer and job.active and not job.heartbeat_attached:
                    job.heartbeat_attached = True
                    return job
        return None

    def active_jobs(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.active]

    def end(self, job: Job, reason: str) -> None:
        """End ``job`` (idempotent): wake its heartbeat stream, then free its runtime and
        delete its directory once its current SDK call (if any) has returned."""
        with self._lock:
            if job.ended.is_set():
                return
            job.end_reason = reason
            job.ended.set()
        level = logging.WARNING if reason.startswith("client") else logging.INFO
        log.log(level, "job %s ended: %s", job.id, reason)
        threading.Thread(target=self._release, args=(job,), name=f"release-{job.id}",
                         daemon=True).start()

    def _release(self, job: Job) -> None:
        with job.lock:
            rt, job.runtime = job.runtime, None
            if rt is not None:
                rt.close()
                log.log(logging.WARNING if job.end_reason.startswith("client") else
                        logging.INFO, "job %s: runtime freed", job.id)
        shutil.rmtree(job.directory, ignore_errors=True)

    def end_all(self, reason: str) -> None:
        for job in self.active_jobs():
            self.end(job, reason)
