"""Compile an application with the official client's SdkCompiler (appliance mode).

    python compile_app.py APP_DIR OUT_JSON [OPTIONS]

Writes {"artifact": <path of the downloaded artifact>} to OUT_JSON. OPTIONS default to the
test application's cslc flags.
"""
import json
import sys

from cerebras.sdk.client import SdkCompiler

OPTIONS = ("--arch=wse3 --fabric-dims=10,5 --fabric-offsets=4,1 --params=W:3,H:2,N:4 "
           "-o out --memcpy --channels=1")

app_dir, out_json = sys.argv[1], sys.argv[2]
options = sys.argv[3] if len(sys.argv) > 3 else OPTIONS

with SdkCompiler() as compiler:
    artifact = compiler.compile(app_dir, "layout.csl", options, ".")

with open(out_json, "w", encoding="utf-8") as f:
    json.dump({"artifact": artifact}, f)
print("compiled:", artifact)
