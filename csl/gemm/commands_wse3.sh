#!/usr/bin/env bash

set -e

cslc --arch=wse3 ./layout.csl --fabric-dims=11,6 --fabric-offsets=4,1 --params=P:4,M:32,K:24,N:16,fp16:0 -o out --memcpy --channels 1
cs_python run.py --name out
