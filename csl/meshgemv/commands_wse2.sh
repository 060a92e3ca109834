#!/usr/bin/env bash

set -e

cslc --arch=wse2 ./layout.csl --fabric-dims=15,10 --fabric-offsets=4,1 --params=P:8,Mt:3,Nt:4,group_num:2 -o out --memcpy --channels 1
cs_python run.py --name out
