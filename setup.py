"""Build script: the pure-Python package comes from pyproject.toml; this file only adds the
compiled extensions of bindings/ (the simulator's hot core), built with pybind11's helpers.

Every ``bindings/<name>.cpp`` becomes the extension module ``waferscale._<name>``; the headers
in bindings/ are included by them (``fabric.cpp`` includes the compiled PE engine,
``pe_engine.hpp``). Extensions are optional: if a compiler is missing the install still
succeeds and the simulator falls back to its Python reference path (slower, same results).

Before compiling, it generates ``bindings/pe_abi.hpp`` (not in git) from
``runtime/waferscale/sim/engine_abi.py``: the enums, record layouts and messages that
lower.py and the C++ engine share.

It also compiles the appliance protocol (``runtime/waferscale/appliance/protos/*.proto``) with
grpcio-tools' protoc into one descriptor set, ``protos/appliance.binpb`` (package data, not in
git), from which :mod:`waferscale.appliance.protocol` builds its message classes at run time.
It is written into the source tree, so that editable installs and ``build_ext --inplace``
have it too, and rewritten only when a ``.proto`` file is newer.
"""

import sys
from glob import glob
from pathlib import Path

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

ParallelCompile("NPY_NUM_BUILD_JOBS").install()

PROTO_ROOT = Path("runtime")
PROTO_DIR = PROTO_ROOT / "waferscale" / "appliance" / "protos"
DESCRIPTOR_SET = PROTO_DIR / "appliance.binpb"


def compile_protos() -> None:
    """protoc (grpcio-tools, a build requirement) -> PROTO_DIR/appliance.binpb."""
    protos = sorted(PROTO_DIR.glob("*.proto"))
    if DESCRIPTOR_SET.is_file() and all(
            p.stat().st_mtime <= DESCRIPTOR_SET.stat().st_mtime for p in protos):
        return
    from grpc_tools import protoc
    args = ["protoc", f"-I{PROTO_ROOT}", "--include_imports",
            f"--descriptor_set_out={DESCRIPTOR_SET}",
            *(str(p.relative_to(PROTO_ROOT)) for p in protos)]
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed on {PROTO_DIR}")


compile_protos()

ABI_HEADER = Path("bindings") / "pe_abi.hpp"


def generate_abi_header() -> None:
    """bindings/pe_abi.hpp from runtime/waferscale/sim/engine_abi.py (the one source of the
    engine's enums, record layouts and shared messages; plain data, importable without numpy).
    Rewritten only when its text changes, so that an unchanged interface rebuilds nothing."""
    sys.path.insert(0, str(Path("runtime").resolve()))
    try:
        from waferscale.sim import engine_abi
    finally:
        sys.path.pop(0)
    text = engine_abi.render_header()
    if not ABI_HEADER.is_file() or ABI_HEADER.read_text() != text:
        ABI_HEADER.write_text(text)


generate_abi_header()

ext_modules = [
    Pybind11Extension(
        f"waferscale._{Path(src).stem}",
        [src],
        depends=sorted(set(glob("bindings/*.hpp")) | {str(ABI_HEADER)}),   # included headers
        cxx_std=17,
        extra_compile_args=["-O3"],
        optional=True,
    )
    # Sorted so builds are reproducible.
    for src in sorted(glob("bindings/*.cpp"))
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
