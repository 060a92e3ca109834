"""The cluster management service (``cluster.cluster_mgmt_pb.ClusterManagement``), as much of
it as PyPI's ``cerebras-sdk`` client uses around each SDK context.

What the client does, and what this servicer answers:

1. ``GetServerConfig``, ``IsMessageBrokerAvailable``, ``GetServerVersions``: an empty config
   (no semantic versions, no user auth, no message broker) and no component versions, so the
   client skips its version checks and polls readiness with ``PollIngressV2``.
2. ``InitSdkCompileJob`` / ``InitSdkExecuteJob``: a new job (:mod:`.jobs`). (The client asks
   for a compile job for ``SdkCompiler`` and for ``simulator=True`` runtimes and launchers, an
   execute job otherwise; here both kinds serve every call.) Then the client
   opens ``HeartbeatV2`` and polls ``PollIngressV2``: one reply, scheduled and ready, whose
   ``service_authority`` (``<job id>.waferscale.local``) the client sends with every SDK call
   of the job. Its ``service_url`` is this server's ``localhost:PORT`` when it listens on a
   loopback address (the client accepts such a URL without probing it); otherwise it is
   empty, and the client uses the management address, which is this server too.
   ``GetJobEvents`` (none) and ``GetJobMeta`` (our version) follow; the client writes
   ``run_meta.json`` and ``<job id>-cluster-details.json`` into its working directory.
3. ``CancelJobV2`` at the end of the context: the job ends, and its heartbeat stream is closed
   as soon as the reply has been sent (the client waits up to ten seconds for it otherwise).

A heartbeat stream that breaks off while its job is active means the client went away: the
job ends and its runtime is freed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import grpc

from waferscale import __version__

from .jobs import COMPILE, EXECUTE, Job, JobTable
from .protocol import message

log = logging.getLogger(__name__)

PKG = "cluster.cluster_mgmt_pb."


def _m(name: str) -> Any:
    return message(PKG + name)


class ManagementServicer:
    """One method per RPC (see the module docstring); requests and replies are the message
    classes of :mod:`.protocol`."""

    def __init__(self, jobs: JobTable, service_url: str = "") -> None:
        self.jobs = jobs
        self.service_url = service_url

    def GetServerConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _m("GetServerConfigResponse")()

    def IsMessageBrokerAvailable(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _m("MessageBrokerAvailabilityCheckResponse")(is_available=False)

    def GetServerVersions(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _m("GetServerVersionsResponse")()

    def _init(self, kind: str, reply: str, context: grpc.ServicerContext) -> Any:
        job = self.jobs.create(kind, context.peer())
        return _m(reply)(job_id=job.id, log_path=str(job.directory), workflow_id="")

    def InitSdkCompileJob(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._init(COMPILE, "SdkCompileJobResponse", context)

    def InitSdkExecuteJob(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._init(EXECUTE, "SdkExecuteJobResponse", context)

    def _job(self, job_id: str, context: grpc.ServicerContext) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job '{job_id}' on this server")
        assert job is not None
        return job

    def PollIngressV2(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        job = self._job(request.job_id, context)
        if not job.active:
            yield _m("GetIngressResponse")(is_scheduled=True, job_failed=True,
                                           message=f"job {job.id} ended: {job.end_reason}")
            return
        yield _m("GetIngressResponse")(
            is_scheduled=True, is_ready=True, service_url=self.service_url,
            service_authority=job.authority,
            message=f"job {job.id} is running on the waferscale simulator")

    def GetJobEvents(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _m("GetJobEventsResponse")()

    def GetJobMeta(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._job(request.job_id, context)
        return _m("GetJobMetaResponse")(software_versions={"waferscale": __version__})

    def GetJob(self, request: Any, context: grpc.ServicerContext) -> Any:
        job = self._job(request.job_id, context)
        status = "JOB_STATUS_IN_PROGRESS" if job.active else "JOB_STATUS_SUCCEEDED"
        return _m("GetJobResponse")(status=status, message=job.end_reason)

    def HeartbeatV2(self, request_iterator: Iterator[Any],
                    context: grpc.ServicerContext) -> Iterator[Any]:
        """Kept open while the job runs (replies are not needed: the client reads readiness
        from PollIngressV2); closed when the job ends. Requests are not read: the first one
        arrives only after ten seconds, and the job is known from the connection."""
        job = self.jobs.attach_heartbeat(context.peer())
        if job is None:
            return   # a retry after its job ended: nothing to keep alive

        def on_done() -> None:
            if job.active:
                self.jobs.end(job, "client went away (heartbeat stream broken)")
        context.add_callback(on_done)
        job.ended.wait()
        yield from ()

    def CancelJobV2(self, request: Any, context: grpc.ServicerContext) -> Any:
        job = self.jobs.get(request.job_id)
        if job is not None:
            status = _m("CancelJobRequest").DESCRIPTOR.fields_by_name[
                "job_status"].enum_type.values_by_number.get(request.job_status)
            reason = f"closed by the client ({status.name if status else request.job_status}"
            reason += f": {request.message})" if request.message else ")"
            # After the reply is out, so that the client has it before its heartbeat stream
            # closes.
            context.add_callback(lambda: self.jobs.end(job, reason))
        return _m("CancelJobResponse")(message="")
