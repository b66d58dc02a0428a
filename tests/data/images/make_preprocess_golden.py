#!/usr/bin/env python3
"""Packs mistral_common's preprocessing goldens small enough to commit.

Reads pixtral-tiny's preprocess_*.safetensors (float32 [3, H, W] per case, made by
mistral_common's ImageEncoder; see /work/shared/golden/README.md) and writes
preprocess_golden.safetensors.gz: the same tensors, losslessly, in one gzip-compressed
safetensors file. A case whose float32 values gzip better as byte planes is stored as U8
[4, 3, H, W], plane k holding byte k of each little-endian float32; the others stay F32 [3, H, W].

Usage: make_preprocess_golden.py /work/shared/golden/pixtral-tiny [OUT.safetensors.gz]
"""
import gzip
import json
import os
import struct
import sys
import zlib


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = data[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        begin, end = info["data_offsets"]
        tensors[name] = (info["shape"], body[begin:end])
    return tensors


def pack(shape, raw):
    planes = b"".join(raw[k::4] for k in range(4))
    if len(zlib.compress(planes, 9)) < len(zlib.compress(raw, 9)):
        return "U8", [4] + shape, planes
    return "F32", shape, raw


def main():
    src = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "preprocess_golden.safetensors.gz")
    tensors = {}
    for name in ("preprocess_1.safetensors", "preprocess_2.safetensors"):
        tensors.update(read_safetensors(os.path.join(src, name)))
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        dtype, shape, data = pack(*tensors[name])
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    blob = struct.pack("<Q", len(header_bytes)) + header_bytes + b"".join(chunks)
    with open(out, "wb") as f:
        f.write(gzip.compress(blob, compresslevel=9, mtime=0))
    for name in sorted(header):
        print(name, header[name]["dtype"], header[name]["shape"])
    print(out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
