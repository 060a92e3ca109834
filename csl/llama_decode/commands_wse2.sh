#!/usr/bin/env bash

set -e

cslc --arch=wse2 ./layout.csl --fabric-dims=11,10 --fabric-offsets=4,1 --params=L:2,D:16,F:24,H_kv:2,G:2,d:4,V:40,eps_bits:925353388,scale_bits:1056964608,W:4,H:3,H_head:2,S:4,R:2,NS:0,h2d_id:10,d2h_id:11 -o out --memcpy --channels 1
cs_python run.py --name out
