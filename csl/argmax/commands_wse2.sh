#!/usr/bin/env bash

set -e

cslc --arch=wse2 ./layout.csl --fabric-dims=12,5 --fabric-offsets=4,1 --params=P_c:5,P_r:3,V:101 -o out --memcpy --channels 1
cs_python run.py --name out
