#!/usr/bin/env bash

set -e

cslc --arch=wse3 ./layout.csl --fabric-dims=13,5 --fabric-offsets=4,1 --params=P_c:6,P_r:3,N:24,root:4,axis:0 -o out --memcpy --channels 1
cs_python run.py --name out
