#!/usr/bin/env bash

set -e

cslc --arch=wse2 ./layout.csl --import-path=.. --fabric-dims=11,5 --fabric-offsets=4,1 --params=P_c:4,P_r:3,M1:29,N:34,M2:23,fp16:0 -o out --memcpy --channels 1
cs_python run.py --name out
