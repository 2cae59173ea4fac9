"""Writes tests/data/bad/: broken and hostile attention files, and EXPECTED.tsv, which names for
each file a fragment of the one-line error `attnviz render` must print (exit code 2, no output).

Usage: python3 tools/make_bad_corpus.py tests/data/bad
"""
import json
import os
import struct
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
expected = []


def put(name, data, needle):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
    expected.append((name, needle))


def npy(dict_text, data=b"", version=(1, 0), pad=True):
    h = dict_text
    pre = 10 if version[0] == 1 else 12
    if pad:
        while (pre + len(h) + 1) % 64:
            h += " "
        h += "\n"
    hb = h.encode("latin-1") if isinstance(h, str) else h
    head = b"\x93NUMPY" + bytes(version)
    head += struct.pack("<H", len(hb)) if version[0] == 1 else struct.pack("<I", len(hb))
    return head + hb + data


def d(descr="<f4", fortran="False", shape="(2, 2)"):
    return "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)


good = npy(d(), b"\0" * 16)
put("empty.npy", b"", "not an .npy file")
put("magic_only.npy", b"\x93NUMPY", "not an .npy file")
put("bad_magic.npy", b"\x93NUMPX" + good[6:], "not an .npy file")
put("version_9.npy", b"\x93NUMPY\x09\x00" + good[8:], "unsupported .npy version 9.0")
put("header_beyond_file.npy", good[:40], "truncated")
put("header_100mb.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 100_000_000) + b"{", "exceeds the 65536-byte limit")
put("header_not_dict.npy", npy("['descr', '<f4']", b"\0" * 16), "malformed header")
put("header_unterminated.npy", npy("{'descr: '<f4', 'fortran_order': False, 'shape': (2, 2), }", b"\0" * 16), "malformed header")
put("header_eval.npy", npy("{'descr': '<f4', 'fortran_order': __import__('os').system('true'), 'shape': (2, 2)}", b"\0" * 16), "malformed header")
put("missing_shape.npy", npy("{'descr': '<f4', 'fortran_order': False}", b"\0" * 16), "header has no 'shape'")
put("extra_key.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': True}", b"\0" * 16), "unexpected header key 'x'")
put("duplicate_key.npy", npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)}", b"\0" * 16), "duplicate header key")
# (float64 is read, narrowed to f32: a file of it is checked at 8 bytes an element)
put("float64_truncated.npy", npy(d("<f8"), b"\0" * 16), "(f64 of shape [2, 2]): truncated")
put("big_endian_f64.npy", npy(d(">f8"), b"\0" * 32), "big-endian")
put("bool.npy", npy(d("|b1"), b"\0" * 4), "dtype '|b1' is not supported")
put("object.npy", npy(d("|O"), b"\0" * 32), "object dtype")
put("structured.npy", npy("{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (2, 2), }", b"\0" * 32), "structured dtype")
put("big_endian.npy", npy(d(">f4"), b"\0" * 16), "big-endian")
put("fortran.npy", npy(d(fortran="True"), b"\0" * 16), "Fortran-order")
put("zero_dim.npy", npy(d(shape="(0, 4)")), "is empty")
put("one_dim.npy", npy(d(shape="(16,)"), b"\0" * 64), "1 dimensions")
put("five_dim.npy", npy(d(shape="(1, 1, 1, 2, 2)"), b"\0" * 16), "5 dimensions (expected 2 to 4: (Q,K), (H,Q,K) or (L,H,Q,K)): an (L, batch, H, Q, K) stack")
put("scalar.npy", npy(d(shape="()"), b"\0" * 4), "0 dimensions")
put("truncated_data.npy", npy(d(shape="(4, 4)"), b"\0" * 40), "truncated")
put("trailing_bytes.npy", npy(d(), b"\0" * 20), "header declares")
put("terabyte_shape.npy", npy(d(shape="(1024, 1024, 1024, 1024)"), b"\0" * 16), "header declares 4398046511232")
put("overflow_shape.npy", npy(d(shape="(4294967296, 4294967296, 4294967296, 4)"), b"\0" * 16), "overflows")
put("negative_dim.npy", npy(d(shape="(-1, 4)"), b"\0" * 16), "malformed header")
put("non_ascii_header.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'é': 1}".encode("latin-1"), b"\0" * 16, pad=False), "not valid UTF-8")
put("nul_in_header.npy", npy("{'descr': '<f4',\0 'fortran_order': False, 'shape': (2, 2), }", b"\0" * 16), "malformed header")


def st(header, data=b"", raw_len=None):
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(hb) if raw_len is None else raw_len
    return struct.pack("<Q", n) + hb + data


t = lambda dtype, shape, a, b: {"dtype": dtype, "shape": shape, "data_offsets": [a, b]}
put("st_empty.safetensors", b"", "too short for a .safetensors header")
put("st_header_len_huge.safetensors", struct.pack("<Q", 1 << 60) + b"{}", "header length 1152921504606846976 does not fit")
put("st_header_beyond_file.safetensors", st(b'{"a":1}', raw_len=4096), "header length 4096 does not fit")
put("st_bad_json.safetensors", st(b'{"a": {"dtype": "F32", '), "invalid safetensors file")
put("st_overlapping.safetensors", st({"a": t("F32", [2, 2], 0, 16), "b": t("F32", [2, 2], 8, 24)}, b"\0" * 24), "tensor `b`'s data starts at byte 8 of the data section and overlaps the end of tensor `a` (byte 16)")
put("st_offsets_out_of_range.safetensors", st({"a": t("F32", [2, 2], 0, 16)}, b"\0" * 8), "need 16 bytes of data after the header, but the file holds 8: truncated (8 bytes missing)")
put("st_shape_mismatch.safetensors", st({"a": t("F32", [4, 4], 0, 16)}, b"\0" * 16), "tensor `a`: shape [4, 4] of F32 is 64 bytes, but its data_offsets [0, 16] hold 16")
put("st_gap.safetensors", st({"a": t("F32", [2, 2], 0, 16), "b": t("F32", [2, 2], 24, 40)}, b"\0" * 40), "tensor `b`'s data starts at byte 24 of the data section and leaves a gap after the end of tensor `a` (byte 16)")
put("st_trailing_bytes.safetensors", st({"a": t("F32", [2, 2], 0, 16)}, b"\0" * 20), "need 16 bytes of data after the header, but the file holds 20: 4 bytes that no tensor names at its end")
put("st_overflow_shape.safetensors", st({"a": t("F32", [1 << 40, 1 << 40], 0, 16)}, b"\0" * 16), "tensor `a`: shape [1099511627776, 1099511627776] of F32 overflows a byte count")
put("st_truncated_capture.safetensors", st({"k": t("F16", [1, 1, 4, 4], 0, 32), "q": t("F16", [1, 1, 4, 4], 32, 64)}, b"\0" * 50), "truncated (14 bytes missing)")
put("st_unknown_dtype.safetensors", st({"a": t("Q4", [2, 2], 0, 2)}, b"\0" * 2), "unknown variant `Q4`")
put("st_int64.safetensors", st({"a": t("I64", [2, 2], 0, 32)}, b"\0" * 32), "has dtype I64")
put("st_no_tensors.safetensors", st({}), "holds no tensors")
put("st_two_tensors.safetensors", st({"a": t("F32", [2, 2], 0, 16), "b": t("F32", [2, 2], 16, 32)}, b"\0" * 32), "pick one with --tensor")
put("st_five_dim.safetensors", st({"a": t("F32", [1, 1, 1, 2, 2], 0, 16)}, b"\0" * 16), "expected 2 to 4 dimensions")
put("st_zero_dim.safetensors", st({"a": t("F32", [0, 2], 0, 0)}), "is empty")
put("st_layers_gap.safetensors", st({"attentions.0": t("F32", [1, 2, 2], 0, 16), "attentions.2": t("F32", [1, 2, 2], 16, 32)}, b"\0" * 32), "do not number 0..2")
put("st_layers_mismatch.safetensors", st({"attentions.0": t("F32", [1, 2, 2], 0, 16), "attentions.1": t("F16", [1, 2, 2], 16, 24)}, b"\0" * 24), "unlike 'attentions.0'")
put("not_attention.txt", b"0.1 0.2\n0.3 0.4\n", "unknown file type")

with open(os.path.join(out, "EXPECTED.tsv"), "w") as f:
    f.write("# file\tfragment of the expected one-line error (exit code 2)\n")
    for name, needle in expected:
        f.write(f"{name}\t{needle}\n")
print(len(expected), "files")
