"""The SDK appliance service (``cerebras.sdk_appliance``): compile on ``waferscale cslc``, run
on waferscale's ``SdkRuntime``, SdkLauncher commands on ``waferscale cs_python``.

Routing: every call carries the HTTP/2 authority its job was given by ``PollIngressV2``
(``<job id>.waferscale.local``); the call is served for that job. gRPC's Python server does
not expose a call's authority publicly, so it is read from the call's details
(:func:`_authority`, the only private grpcio attribute used; checked by the tests). A call
whose job is unknown or has ended is refused with a clear message.

Replies: every reply carries a ``cerebras.StatusCode``; errors map to

- ``SDK_RT_COMPILE_ERROR``: cslc's options or the program are wrong; the message is the
  compiler's ``file:line:col: error: ...`` text (the client logs it as "CSL compiler output"
  and raises ``SdkCompiler.compile() failed.``);
- ``SDK_RT_UNKNOWN``: a runtime command was refused or failed (the host API's message, e.g. a
  wrong symbol id, a deadlock), or an artifact or path is missing or bad; the client raises
  ``ApplianceUnknownError`` with the message. (Not ``SDK_RT_FILE_ERROR``: the client presents
  that one as an internal error of Cerebras' software and sends the user to their support);
- ``SDK_COMMAND_ERROR``: an SdkLauncher command exited non-zero (the client raises
  ``RuntimeError`` with its output);
- ``SDK_RT_INTERNAL_ERROR``: a bug in waferscale (logged with its traceback).

A call that breaks off before it has finished (the client was killed mid-stream) ends its job,
which frees the job's runtime (:mod:`.jobs`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from . import artifacts
from .artifacts import ArtifactError, CompileFailed
from .jobs import SIM_LOCK, Job, JobTable
from .protocol import enum_value, message
from .runtime_session import CommandFailed, RuntimeSession

log = logging.getLogger(__name__)


def _code(name: str) -> int:
    return enum_value("cerebras.StatusCode", name)


def _m(name: str) -> Any:
    return message("cerebras." + name)


class _Failure(Exception):
    """An error reply: a status code name and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _authority(context: grpc.ServicerContext) -> str:
    """The call's HTTP/2 authority (``:authority``)."""
    try:
        host = context._rpc_event.call_details.host  # type: ignore[attr-defined]
    except AttributeError:
        raise _Failure("SDK_RT_INTERNAL_ERROR", (
            f"this grpcio ({grpc.__version__}) does not expose a call's authority, by which "
            "the waferscale appliance server routes calls to jobs; install a grpcio release "
            "that does (1.85 does)")) from None
    return host.decode("utf-8", "replace") if isinstance(host, bytes) else str(host or "")


def _reply(code: str = "SDK_RT_SUCCESS", text: str = "") -> Any:
    return _m("SdkResponse")(code=_code(code), message=text)


class SdkServicer:
    """One method per RPC of ``cerebras.sdk_appliance``."""

    def __init__(self, jobs: JobTable) -> None:
        self.jobs = jobs

    # -- plumbing ----------------------------------------------------------------------------

    def _job(self, context: grpc.ServicerContext) -> Job:
        authority = _authority(context)
        job = self.jobs.by_authority(authority)
        if job is None:
            raise _Failure("SDK_RT_UNKNOWN", (
                f"this call names no job of this server (authority '{authority}'); the client "
                "must start its context against this server's management address (CSCONFIG_PATH"
                " written by `waferscale appliance-server --write-config`)"))
        if not job.active:
            raise _Failure("SDK_RT_UNKNOWN", f"job {job.id} has ended ({job.end_reason})")
        return job

    def _watch(self, job: Job, context: grpc.ServicerContext) -> Callable[[], None]:
        """End ``job`` if this call terminates before the returned ``finished()`` is called
        (the client went away mid-call)."""
        done = threading.Event()

        def on_termination() -> None:
            if not done.is_set() and job.active:
                self.jobs.end(job, "client went away during a call")
        context.add_callback(on_termination)
        return done.set

    def _guard(self, what: str, fn: Callable[[], Any], failure: Callable[[str, str], Any]
               ) -> Any:
        """``fn()``; errors become ``failure(code, message)``."""
        try:
            return fn()
        except _Failure as f:
            return failure(f.code, f.message)
        except CompileFailed as e:
            return failure("SDK_RT_COMPILE_ERROR", str(e))
        except CommandFailed as e:
            return failure("SDK_RT_UNKNOWN", str(e))
        except artifacts.CommandFailed as e:
            return failure("SDK_COMMAND_ERROR", str(e))
        except ArtifactError as e:
            return failure("SDK_RT_UNKNOWN", str(e))
        except Exception as e:  # noqa: BLE001 - a bug: report it, keep serving
            log.exception("%s failed", what)
            return failure("SDK_RT_INTERNAL_ERROR", f"waferscale appliance server: {what}: "
                           f"{type(e).__name__}: {e}")

    def _unary(self, what: str, context: grpc.ServicerContext,
               fn: Callable[[Job], Any]) -> Any:
        """Run ``fn(job)`` under the job's lock; an ``SdkResponse`` error reply on failure."""
        def run() -> Any:
            job = self._job(context)
            finished = self._watch(job, context)
            try:
                with job.lock:
                    return fn(job)
            except grpc.RpcError:     # reading the client's stream failed: it went away
                self.jobs.end(job, "client went away during a call")
                raise _Failure("SDK_RT_USER_TERMINATED", "the client went away") from None
            finally:
                finished()
        return self._guard(what, run, _reply)

    def _runtime(self, job: Job) -> RuntimeSession:
        if job.runtime is None:
            raise _Failure("SDK_RT_UNKNOWN", "no runtime in this job (sdk_runtime_create "
                           "first)")
        return job.runtime

    # -- files and compile ---------------------------------------------------------------------

    def sdk_upload_files(self, request_iterator: Iterator[Any],
                         context: grpc.ServicerContext) -> Any:
        def run(job: Job) -> Any:
            upload: artifacts.Upload | None = None
            already = False
            lock: threading.Lock | None = None
            try:
                for req in request_iterator:
                    if upload is None:
                        if req.mode == "SDK_COMPILE":
                            name = artifacts.safe_name(req.compile_hash, "compile hash")
                            lock = artifacts.hash_lock(name)
                            lock.acquire()
                            base = self.jobs.root / "compile" / name
                            already = artifacts.compiled(base)
                        else:
                            base = job.directory
                            if req.destination_rel_path:
                                base = artifacts.inside(base, req.destination_rel_path,
                                                        "destination")
                        upload = artifacts.Upload(base)
                    if not already:
                        upload.write(req.file_name, req.data_chunk)
                if upload is None:
                    return _reply()
                if already:
                    return _reply("SDK_RT_ALREADY_COMPILED", "found in the compile cache")
                if req.mode != "SDK_COMPILE":
                    artifacts.extract_artifacts(upload)
                return _reply()
            finally:
                if lock is not None:
                    lock.release()
        return self._unary("sdk_upload_files", context, run)

    def sdk_compile(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run(job: Job) -> Any:
            name = artifacts.safe_name(request.compile_hash, "compile hash")
            compile_dir = self.jobs.root / "compile" / name
            if not compile_dir.is_dir():
                raise ArtifactError(f"nothing was uploaded for compile hash '{name}'")
            with artifacts.hash_lock(name), SIM_LOCK:
                text = artifacts.compile_app(compile_dir, list(request.options))
            log.info("job %s: compiled %s", job.id, name)
            return _reply(text=text)
        return self._unary("sdk_compile", context, run)

    def sdk_download_files(self, request: Any, context: grpc.ServicerContext
                           ) -> Iterator[Any]:
        def run() -> Any:
            job = self._job(context)
            # The job's uploads (a runtime's or launcher's artifact), else the compile cache
            # (SdkCompiler downloads its compile_hash directory).
            top = artifacts.inside(job.directory, request.file_name, "artifact").relative_to(
                job.directory).parts[0]
            base = job.directory if (job.directory / top).exists() else \
                self.jobs.root / "compile"
            with job.lock:
                return artifacts.download(base, request.file_name)

        def failure(code: str, text: str) -> Any:
            return _m("SdkArtifactResponse")(status=_reply(code, text))
        result = self._guard("sdk_download_files", run, failure)
        if not isinstance(result, tuple):
            yield result
            return
        name, data = result
        Data = _m("SdkArtifactResponse").SdkArtifactData
        for piece in artifacts.chunks(data):
            yield _m("SdkArtifactResponse")(data=Data(
                file_name=name, data_chunk=piece, num_bytes=len(piece), total_bytes=len(data)))

    def sdk_run_command(self, request_iterator: Iterator[Any],
                        context: grpc.ServicerContext) -> Any:
        def run(job: Job) -> Any:
            reqs = list(request_iterator)
            if not reqs:
                return _reply()
            app = artifacts.safe_name(reqs[0].app_hash, "artifact id")
            out = artifacts.run_commands(job.directory / app, [r.command for r in reqs],
                                         lambda: not context.is_active() or not job.active)
            return _reply(text=out)
        return self._unary("sdk_run_command", context, run)

    def sdk_shutdown(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run(job: Job) -> Any:
            rt, job.runtime = job.runtime, None
            if rt is not None:
                with SIM_LOCK:
                    rt.close()
            return _reply()
        return self._unary("sdk_shutdown", context, run)

    # -- runtime -------------------------------------------------------------------------------

    def sdk_runtime_create(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run(job: Job) -> Any:
            app = artifacts.safe_name(request.app_hash, "artifact id")
            out = artifacts.output_dir(job.directory / app)
            if job.runtime is not None:
                raise _Failure("SDK_RT_UNKNOWN", "this job already has a runtime")
            job.runtime = RuntimeSession(out)
            return _reply()
        return self._unary("sdk_runtime_create", context, run)

    def sdk_runtime_start(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run(job: Job) -> Any:
            with SIM_LOCK:
                self._runtime(job).start()
            return _reply()
        return self._unary("sdk_runtime_start", context, run)

    def sdk_runtime_stop(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run(job: Job) -> Any:
            with SIM_LOCK:
                self._runtime(job).stop()
            return _reply()
        return self._unary("sdk_runtime_stop", context, run)

    def sdk_runtime_get_id(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run(job: Job) -> Any:
            return _m("SdkGetIdResponse")(status=_reply(),
                                          id=self._runtime(job).get_id(request.symbol))

        def failure(code: str, text: str) -> Any:
            return _m("SdkGetIdResponse")(status=_reply(code, text), id=-1)

        def guarded() -> Any:
            job = self._job(context)
            with job.lock:
                return run(job)
        return self._guard("sdk_runtime_get_id", guarded, failure)

    def sdk_runtime_memcpy_h2d(self, request_iterator: Iterator[Any],
                               context: grpc.ServicerContext) -> Any:
        def run(job: Job) -> Any:
            first = None
            parts = []
            for req in request_iterator:
                first = first or req
                parts.append(req.src.data_chunk[:req.src.num_bytes])
            if first is None:
                return _reply()
            o = first.options
            with SIM_LOCK:
                self._runtime(job).memcpy_h2d(
                    first.op_index, first.dest, b"".join(parts), first.x, first.y, first.w,
                    first.h, first.elt_per_pe, streaming=o.streaming, data_type=o.data_type,
                    order=o.order, nonblock=o.nonblock)
            return _reply()
        return self._unary("sdk_runtime_memcpy_h2d", context, run)

    def _data_stream(self, what: str, context: grpc.ServicerContext,
                     fn: Callable[[Job], bytes | None]) -> Iterator[Any]:
        """A ``SdkD2HResponse`` stream: the bytes of ``fn(job)`` in chunks, nothing for None,
        or one error status."""
        finished: list[Callable[[], None]] = []

        def run() -> Any:
            job = self._job(context)
            finished.append(self._watch(job, context))
            with job.lock:
                return fn(job)

        def failure(code: str, text: str) -> Any:
            return _m("SdkD2HResponse")(status=_reply(code, text))
        result = self._guard(what, run, failure)
        if isinstance(result, bytes):
            for piece in artifacts.chunks(result):
                yield _m("SdkD2HResponse")(d2h_data=_m("MemcpyData")(
                    data_chunk=piece, num_bytes=len(piece), total_bytes=len(result)))
        elif result is not None:
            yield result
        for f in finished:
            f()

    def sdk_runtime_memcpy_d2h(self, request: Any, context: grpc.ServicerContext
                               ) -> Iterator[Any]:
        def run(job: Job) -> bytes | None:
            o = request.options
            with SIM_LOCK:
                return self._runtime(job).memcpy_d2h(
                    request.op_index, request.src, request.x, request.y, request.w,
                    request.h, request.elt_per_pe, streaming=o.streaming,
                    data_type=o.data_type, order=o.order, nonblock=o.nonblock)
        return self._data_stream("sdk_runtime_memcpy_d2h", context, run)

    def sdk_get_symbol_rect(self, request: Any, context: grpc.ServicerContext
                            ) -> Iterator[Any]:
        def run(job: Job) -> bytes:
            with SIM_LOCK:
                return self._runtime(job).symbol_rect(request.x, request.y, request.w,
                                                      request.h, request.symbol,
                                                      request.bytes_per_elem)
        return self._data_stream("sdk_get_symbol_rect", context, run)

    def sdk_runtime_call(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run(job: Job) -> Any:
            with SIM_LOCK:
                self._runtime(job).call(request.op_index, request.name, list(request.params),
                                        request.options.nonblock)
            return _reply()
        return self._unary("sdk_runtime_call", context, run)

    def _task(self, what: str, request: Any, context: grpc.ServicerContext
              ) -> Iterator[Any]:
        Done = _m("SdkTaskDoneResponse")
        Info = Done.SdkTaskInfo

        def run() -> Any:
            job = self._job(context)
            with job.lock:
                return self._runtime(job).take_outcome(request.op_index)

        def failure(code: str, text: str) -> Any:
            return Done(status=_reply(code, text))
        outcome = self._guard(what, run, failure)
        if not hasattr(outcome, "error"):
            yield outcome
        elif outcome.error is not None:
            yield Done(status=_reply("SDK_RT_UNKNOWN", outcome.error))
        elif outcome.data is not None:
            data = outcome.data
            for piece in artifacts.chunks(data):
                yield Done(info=Info(d2h_data=_m("MemcpyData")(
                    data_chunk=piece, num_bytes=len(piece), total_bytes=len(data))))
        else:
            yield Done(info=Info(state=_m("SdkTaskState")(done=True)))

    def sdk_runtime_task_wait(self, request: Any, context: grpc.ServicerContext
                              ) -> Iterator[Any]:
        return self._task("sdk_runtime_task_wait", request, context)

    def sdk_runtime_is_task_done(self, request: Any, context: grpc.ServicerContext
                                 ) -> Iterator[Any]:
        return self._task("sdk_runtime_is_task_done", request, context)
