#!/usr/bin/env bash

set -e

cslc --arch=wse2 ./layout.csl --import-path=.. --fabric-dims=12,3 --fabric-offsets=4,1 --params=P_c:5,D:37,eps_bits:925353388,residual:1 -o out --memcpy --channels 1
cs_python run.py --name out
