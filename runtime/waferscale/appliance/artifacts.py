"""Files of the appliance server: uploads, downloads, the compile cache, relocation of compiled
artifacts, and SdkLauncher commands.

Layout of the server's working directory (``--workdir``)::

    compile/<compile_hash>/     one compile: the uploaded CSL sources, the output directory
                                (cslc's -o, e.g. out/), .csl_bin_name (the output name) and
                                .waferscale_root (this directory's absolute path at compile)
    jobs/<job id>/              one execute job: uploaded artifacts, extracted (deleted when
                                the job ends)

``compile_hash`` is the client's hash of the CSL sources and options (``cs_<sha256>``), so a
completed ``compile/<compile_hash>/`` *is* the compile cache: an upload for a hash whose
``.csl_bin_name`` exists is answered ``SDK_RT_ALREADY_COMPILED`` and nothing is compiled.
The artifact the client downloads is that directory as ``<compile_hash>.tar.gz``.

Relocation: the simulator runs a program from its sources, and ``waferscale.json`` records
their absolute paths. When an artifact is extracted (into a job directory, possibly of another
server), every ``waferscale.json`` below it is rewritten from the recorded root
(``.waferscale_root``) to where it now is.

Every client-supplied path is relative and stays inside its base directory; tarballs are
extracted with :mod:`tarfile`'s ``data`` filter (no absolute paths, links out, devices).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BIN_NAME_FILE = ".csl_bin_name"
ROOT_FILE = ".waferscale_root"
TARBALL = ".tar.gz"
CHUNK = 64 << 20                       # bytes per streamed reply message

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_hash_locks: dict[str, threading.Lock] = {}
_hash_locks_guard = threading.Lock()


class ArtifactError(Exception):
    """A bad path, a missing artifact or an unreadable upload (a user error)."""


class CompileFailed(Exception):
    """cslc's options or the CSL program are wrong (``SDK_RT_COMPILE_ERROR``); the message is
    the compiler's, with ``file:line:col`` relative to the uploaded application directory."""


class CommandFailed(Exception):
    """An SdkLauncher command exited with a non-zero status (``SDK_COMMAND_ERROR``)."""


def safe_name(name: str, what: str) -> str:
    """``name`` if it is one plain path component (a compile hash, an artifact id)."""
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise ArtifactError(f"{what} '{name}' is not a valid name")
    return name


def inside(base: Path, rel: str, what: str) -> Path:
    """``base / rel`` for a relative ``rel`` that stays inside ``base``."""
    if not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        raise ArtifactError(f"{what} '{rel}' must be a relative path inside the application "
                            "directory")
    return base / rel


def hash_lock(compile_hash: str) -> threading.Lock:
    with _hash_locks_guard:
        return _hash_locks.setdefault(compile_hash, threading.Lock())


# -- uploads ------------------------------------------------------------------------------------


@dataclass
class Upload:
    """Files written by one ``sdk_upload_files`` stream."""
    base: Path
    files: dict[str, Path] = field(default_factory=dict)

    def write(self, file_name: str, chunk: bytes) -> None:
        """Append one chunk (the first chunk of a file creates it)."""
        path = inside(self.base, file_name, "uploaded file")
        first = file_name not in self.files
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb" if first else "ab") as f:
            f.write(chunk)
        self.files[file_name] = path


def compiled(compile_dir: Path) -> bool:
    return (compile_dir / BIN_NAME_FILE).is_file()


def extract_artifacts(upload: Upload) -> list[Path]:
    """Extract every uploaded ``.tar.gz`` next to where it was written (then delete it) and
    relocate the compiled programs in it; the extracted top-level entries."""
    out: list[Path] = []
    for path in upload.files.values():
        if not path.name.endswith(TARBALL):
            continue
        if not hasattr(tarfile, "data_filter"):
            raise ArtifactError("extracting artifacts safely needs Python 3.11.4 or later "
                                "(tarfile's extraction filters); upgrade the server's Python")
        dest = path.parent
        try:
            with tarfile.open(path, "r:gz") as tar:
                names = tar.getnames()
                tar.extractall(dest, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise ArtifactError(f"cannot extract the uploaded artifact '{path.name}': {e}"
                                ) from None
        path.unlink()
        tops = sorted({Path(n).parts[0] for n in names if Path(n).parts})
        for top in tops:
            relocate(dest / top)
            out.append(dest / top)
    return out


def relocate(root: Path) -> None:
    """Rewrite the paths in every ``waferscale.json`` below ``root`` from the root recorded at
    compile time (``root/.waferscale_root``) to ``root``."""
    marker = root / ROOT_FILE
    if not marker.is_file():
        return
    old = marker.read_text(encoding="utf-8").strip()
    new = str(root.resolve())
    if old == new:
        return

    def move(p: str) -> str:
        return new + p[len(old):] if p == old or p.startswith(old + os.sep) else p

    for rec_path in root.rglob("waferscale.json"):
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
        rec["layout"] = move(rec["layout"])
        opts = rec.get("options", {})
        opts["import_paths"] = [move(p) for p in opts.get("import_paths", [])]
        rec["sources"] = {move(k): v for k, v in rec.get("sources", {}).items()}
        rec_path.write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
    marker.write_text(new + "\n", encoding="utf-8")
    log.debug("relocated %s from %s", root, old)


# -- downloads ----------------------------------------------------------------------------------


def download(base: Path, file_name: str) -> tuple[str, bytes]:
    """The reply name and bytes of artifact ``file_name`` under ``base``: a file as is, a
    directory as ``<name>.tar.gz``."""
    path = inside(base, file_name, "artifact")
    if path.is_dir():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(path, arcname=path.name)
        return path.name + TARBALL, buf.getvalue()
    if path.is_file():
        return path.name, path.read_bytes()
    raise ArtifactError(f"no artifact '{file_name}' on the server (compile it first, or "
                        "check the name)")


def chunks(data: bytes) -> Iterator[bytes]:
    """``data`` in reply-sized pieces (one empty piece for empty data)."""
    if not data:
        yield b""
    for i in range(0, len(data), CHUNK):
        yield data[i:i + CHUNK]


# -- compile ------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CompileFailed(f"cslc: error: {message}")


def _cslc_parser() -> argparse.ArgumentParser:
    from waferscale.lang.cli import add_cslc_flags
    p = _Parser(prog="cslc", add_help=False)
    p.add_argument("layout")
    add_cslc_flags(p)
    p.add_argument("--verbose", action="store_true")
    return p


def compile_app(compile_dir: Path, options: list[str]) -> str:
    """Compile the application uploaded to ``compile_dir`` with cslc's command line
    ``options`` (main file first), like ``waferscale cslc`` run in that directory; returns the
    compiler's messages (warnings, ``@comptime_print`` output).

    Raises :class:`CompileFailed` for wrong options or an error in the program. Paths in
    messages are relative to the application directory, as the user wrote them.
    """
    from waferscale.host.compile import compile_layout
    from waferscale.lang.cli import options_from_args
    from waferscale.lang.errors import CslError
    args = _cslc_parser().parse_args(options)
    layout = inside(compile_dir, args.layout, "main CSL file")
    if not layout.is_file():
        raise CompileFailed(f"cslc: error: cannot open '{args.layout}' (uploaded files: "
                            f"{', '.join(sorted(_csl_files(compile_dir))) or 'none'})")
    out_name = args.output or "out"
    output = inside(compile_dir, out_name, "output directory (-o)")
    prefix = str(compile_dir.resolve()) + os.sep

    def rel(text: str) -> str:
        return text.replace(prefix, "")
    try:
        _, lay = compile_layout(layout.resolve(), options_from_args(args, cwd=compile_dir),
                                output)
    except CslError as e:
        raise CompileFailed(rel(e.render())) from None
    lines = [f"warning: {w}" for w in lay.warnings]
    lines += [f"{where}: comptime_print: {text}" for where, text in lay.prints]
    (compile_dir / ROOT_FILE).write_text(str(compile_dir.resolve()) + "\n", encoding="utf-8")
    (compile_dir / BIN_NAME_FILE).write_text(out_name + "\n", encoding="utf-8")
    return rel("\n".join(lines))


def _csl_files(d: Path) -> Iterable[str]:
    return (str(p.relative_to(d)) for p in d.rglob("*.csl"))


def output_dir(app_dir: Path) -> Path:
    """The compile output directory of an extracted artifact (from ``.csl_bin_name``)."""
    marker = app_dir / BIN_NAME_FILE
    if not marker.is_file():
        raise ArtifactError(f"'{app_dir.name}' is not a compiled artifact on the server "
                            f"(no {BIN_NAME_FILE}); upload the artifact SdkCompiler returned")
    return inside(app_dir, marker.read_text(encoding="utf-8").strip(), "output name")


# -- SdkLauncher commands -----------------------------------------------------------------------

_CMADDR = re.compile(r"\s*--cmaddr(?:=|\s+)%CMADDR%")


def _shims(directory: Path) -> Path:
    """A directory with ``python`` and ``cs_python`` running ``waferscale cs_python``."""
    bin_dir = directory / ".waferscale-bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("python", "cs_python"):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m waferscale '
                        'cs_python "$@"\n', encoding="utf-8")
        shim.chmod(0o755)
    return bin_dir


def run_commands(app_dir: Path, commands: list[str], cancelled: Callable[[], bool]) -> str:
    """Run SdkLauncher commands, one after the other, with ``/bin/sh`` in ``app_dir``, where
    ``python``/``cs_python`` are ``waferscale cs_python`` (the client already replaced
    ``cs_python`` by ``python``). ``--cmaddr %CMADDR%`` is dropped (the simulator is the
    system). Returns the commands' combined output; raises :class:`CommandFailed` at the first
    non-zero exit, with the output so far. A command is killed when ``cancelled()`` turns true
    (the client went away)."""
    import waferscale
    if not app_dir.is_dir():
        raise ArtifactError(f"no artifact '{app_dir.name}' in this job; SdkLauncher uploads it "
                            "when its context starts")
    env = dict(os.environ)
    env["PATH"] = f"{_shims(app_dir.parent)}{os.pathsep}{env.get('PATH', '')}"
    pkg_root = str(Path(waferscale.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    output: list[str] = []
    for raw in commands:
        command = _CMADDR.sub("", raw)
        if "%CMADDR%" in command:
            raise CommandFailed(f"command '{raw}': %CMADDR% is only understood as "
                                "'--cmaddr %CMADDR%' (dropped: the simulator is the system)")
        log.info("%s: running %s", app_dir.name, command)
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=app_dir, env=env,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
            while True:
                try:
                    status = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if cancelled():
                        proc.kill()
                        proc.wait()
                        raise CommandFailed(f"command '{command}' killed: the client went "
                                            "away") from None
            out.seek(0)
            output.append(out.read().decode("utf-8", errors="replace"))
        if status != 0:
            raise CommandFailed(f"command '{command}' exited with status {status}:\n"
                                + "".join(output))
    return "".join(output)
