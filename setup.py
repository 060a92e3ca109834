"""Build script: the pure-Python package comes from pyproject.toml; this file only adds the
compiled extensions of bindings/ (the simulator's hot core), built with pybind11's helpers.

Every ``bindings/<name>.cpp`` becomes the extension module ``waferscale._<name>``; the headers
in bindings/ are included by them (``fabric.cpp`` includes the compiled PE engine,
``pe_engine.hpp``). Extensions are optional: if a compiler is missing the install still
succeeds and the simulator falls back to its Python reference path (slower, same results).
"""

from glob import glob
from pathlib import Path

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

ParallelCompile("NPY_NUM_BUILD_JOBS").install()

ext_modules = [
    Pybind11Extension(
        f"waferscale._{Path(src).stem}",
        [src],
        depends=sorted(glob("bindings/*.hpp")),   # headers included by the sources
        cxx_std=17,
        extra_compile_args=["-O3"],
        optional=True,
    )
    # Sorted so builds are reproducible.
    for src in sorted(glob("bindings/*.cpp"))
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
