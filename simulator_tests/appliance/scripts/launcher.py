"""SdkLauncher (appliance mode): stage a host script next to the compiled artifact and run it
with cs_python on the appliance.

    python launcher.py ARTIFACT HOST_SCRIPT

Prints the command's output (which ends with PASS when the host script's checks pass).
"""
import sys

from cerebras.sdk.client import SdkLauncher

with SdkLauncher(sys.argv[1], simulator=True) as launcher:
    launcher.stage(sys.argv[2])
    output = launcher.run("cs_python launched_host.py --name out")
print(output)
