#!/usr/bin/env bash

set -e

cslc --arch=wse2 ./layout.csl --import-path=.. --fabric-dims=11,3 --fabric-offsets=4,1 --params=P_c:4,C:24,H:4,H_kv:2,d:8,scale_bits:1052050675 -o out --memcpy --channels 1
cs_python run.py --name out
