"""Compile an application with an error in it; print what the client raised.

    python compile_error.py APP_DIR

Exits 0 if SdkCompiler.compile raised (the compiler's message is logged by the client on
stderr), 1 if the compile succeeded.
"""
import sys

from cerebras.sdk.client import SdkCompiler

OPTIONS = ("--arch=wse3 --fabric-dims=10,5 --fabric-offsets=4,1 --params=W:3,H:2,N:4 "
           "-o out --memcpy --channels=1")

try:
    with SdkCompiler() as compiler:
        compiler.compile(sys.argv[1], "layout.csl", OPTIONS, ".")
except Exception as e:  # the client raises ApplianceUnknownError
    print(f"raised {type(e).__name__}: {e}")
    sys.exit(0)
print("compiled without error")
sys.exit(1)
