#!/usr/bin/env bash

set -e

# Four layers: layer 0 resident, layers 1-3 streamed through two slots (R:1, NS:2).
cslc --arch=wse3 ./layout.csl --fabric-dims=11,13 --fabric-offsets=4,1 --params=L:4,D:16,F:24,H_kv:2,G:2,d:4,V:40,eps_bits:925353388,scale_bits:1056964608,W:4,H:3,H_head:2,S:4,R:1,NS:2,h2d_id:10,d2h_id:11 -o out --memcpy --channels 1
cs_python run.py --name out
