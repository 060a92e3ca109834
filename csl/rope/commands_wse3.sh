#!/usr/bin/env bash

set -e

cslc --arch=wse3 ./layout.csl --fabric-dims=12,3 --fabric-offsets=4,1 --params=P_c:5,H:3,d:8,max_pos:16 -o out --memcpy --channels 1
cs_python run.py --name out
