"""Appliance mode: the Cerebras cluster protocol served on the simulator.

``waferscale appliance-server`` answers the two gRPC services that PyPI's official client
(``cerebras-sdk``: ``from cerebras.sdk.client import SdkCompiler, SdkRuntime, SdkLauncher``)
talks to, so that appliance-mode host scripts run unmodified against waferscale:

``protocol``         our ``.proto`` files (``protos/``), compiled at build time, as message
                     classes and gRPC handlers
``management``       the cluster management service: jobs, readiness, heartbeat, cancel
``sdk_service``      the ``cerebras.sdk_appliance`` service: files, compile, runtime, launcher
``jobs``             one job per client context; routing, liveness, freeing runtimes
``runtime_session``  a job's runtime on :class:`waferscale.host.sdkruntime.SdkRuntime`
``artifacts``        uploads, downloads, the compile cache, relocation, launcher commands
``server``           both services on one port; the ``appliance-server`` command

See docs/appliance.md.
"""
