#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target (tests/fuzz/corpus/<target>/):
a few valid inputs and edge cases each, small. The corpus is checked in;
run this again (from anywhere) after changing a target's input format.
Needs python3 and protoc (protobuf-compiler, for the requests target)."""

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of nothing
HEX2 = "63cce0e0" + "0" * 52 + "cc89"


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def digest():
    for name, s in [("full", f"sha256:{HEX}/0"), ("key", f"{HEX}/12"), ("no_size", f"sha256:{HEX}"),
                    ("negative", f"sha256:{HEX}/-1"), ("upper", f"sha256:{HEX.upper()}/1"),
                    ("huge_size", f"{HEX}/99999999999999999999"), ("file_value", f"f:{HEX}/3"),
                    ("exec_value", f"x:{HEX2}/5"), ("dir_value", f"d:{HEX}/12"), ("link_value", "l:../a/b"),
                    ("bad_kind", "q:x"), ("slash", "/")]:
        write("digest", name, s)


def path():
    # FuzzedDataProvider: the first string ends at a backslash followed by
    # another character; the rest of the input is the second.
    for name, (a, b) in {"link_up": ("a/b", "../c"), "link_out": ("a", "../../etc/passwd"),
                         "link_late_dotdot": ("", "x/../../y"), "name": ("", "file.txt"),
                         "dot": ("x", "."), "dotdot": ("x", ".."), "utf8": ("", "d\u00e9j\u00e0/\u65e5\u672c"),
                         "overlong": ("", "\xc0\xaf"), "surrogate": ("", "\xed\xa0\x80"),
                         "nul": ("", "a\0b"), "newline": ("abc", "a\nb"), "project": ("", "team-1.main_x"),
                         "long": ("", "n" * 300)}.items():
        raw = a.encode("utf-8", "surrogateescape") + b"\\x" + b.encode("latin-1" if name in (
            "overlong", "surrogate") else "utf-8")
        write("path", name, raw)


def tree():
    # FuzzedDataProvider input: names from the front, choices from the back.
    write("tree", "names", b"src\\xmain.c\\xlib\\x../x\\xa/b\\x" + bytes(range(0, 64)))
    write("tree", "hex", (HEX + "\\x" + HEX2 + "\\x").encode() + bytes([1, 2, 3, 1, 0, 2] * 8))
    write("tree", "zeros", bytes(96))
    write("tree", "ones", b"\xff" * 96)


def oci():
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": f"sha256:{HEX}", "size": 10240}
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{HEX2}", "size": 120}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config, "layers": [layer]}
    write("oci", "manifest", json.dumps(manifest))
    docker = dict(manifest, mediaType="application/vnd.docker.distribution.manifest.v2+json",
                  layers=[dict(layer, mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip")])
    write("oci", "docker_manifest", json.dumps(docker))
    write("oci", "index", json.dumps({"schemaVersion": 2, "manifests": [config]}))
    write("oci", "zstd_layers", json.dumps(dict(manifest, layers=[
        dict(layer, mediaType="application/vnd.oci.image.layer.v1.tar+zstd")] * 3)))
    write("oci", "schema_string", json.dumps(dict(manifest, schemaVersion="2")))
    write("oci", "size_string", json.dumps(dict(manifest, config=dict(config, size="120"))))
    write("oci", "config", json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                                       "rootfs": {"type": "layers", "diff_ids": [f"sha256:{HEX}"]}}))
    write("oci", "config_arm", json.dumps({"architecture": "arm64", "os": "linux"}))
    write("oci", "config_arch_number", json.dumps({"architecture": 64, "os": ["linux"]}))
    write("oci", "not_json", "{\"schemaVersion\": 2,")


def tar(entries, fmt=tarfile.GNU_FORMAT, compress=False):
    tarfile.RECORDSIZE = tarfile.BLOCKSIZE  # no padding to 10 KiB after the end
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, arg in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.mode = 0o755 if kind == "dir" else 0o644
            data = None
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "file":
                data = arg.encode()
                info.size = len(data)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, arg
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, arg
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "setuid":
                data = arg.encode()
                info.size, info.mode = len(data), 0o4755
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def unpack():
    rootfs = [("bin", "dir", None), ("bin/sh", "file", "#!/bin/true\n"), ("etc", "dir", None),
              ("etc/hostname", "file", "kiln\n"), ("bin/ln", "hardlink", "bin/sh"),
              ("lib", "symlink", "usr/lib")]
    write("unpack", "rootfs.tar", tar(rootfs))
    write("unpack", "rootfs.tar.gz", tar(rootfs, compress=True))
    write("unpack", "pax.tar", tar(rootfs[:4], fmt=tarfile.PAX_FORMAT))
    write("unpack", "whiteouts.tar", tar([("etc/.wh.passwd", "file", ""), ("etc/.wh..wh..opq", "file", ""),
                                          (".wh.lnk", "file", "")]))
    write("unpack", "escapes.tar", tar([("../x", "file", "x"), ("/abs", "file", "x"), ("lnk/x", "file", "x"),
                                        ("abs/x", "file", "x"), ("h", "hardlink", "../outside/keep")]))
    write("unpack", "replace.tar", tar([("etc", "file", "not a dir"), ("lnk", "dir", None),
                                        ("etc/passwd", "symlink", "/etc/shadow")]))
    write("unpack", "special.tar", tar([("dev", "dir", None), ("dev/null", "chr", None), ("fifo", "fifo", None),
                                        ("su", "setuid", "x")]))
    long_name = "d" * 90 + "/" + "e" * 20 + "/.wh.file"
    write("unpack", "longname.tar", tar([(long_name, "file", ""), ("l" * 120, "symlink", "t" * 120)]))
    write("unpack", "empty.tar", bytes(1024))


def cc_command():
    for name, args in {"compile": ["-c", "foo.c", "-o", "foo.o"],
                       "depfile": ["-c", "-MD", "-MF", "x.d", "-MT", "x.o", "a.cc"],
                       "includes": ["-c", "-Iinc", "-isystem", "/usr/x", "-iquote", "q", "-idirafter", "z",
                                    "-DX=1", "-O2", "-g", "a.c"],
                       "preprocess": ["-E", "a.c"], "link": ["a.o", "b.o", "-o", "app"],
                       "response": ["@args.rsp"], "header": ["-c", "-x", "c++", "a.h"],
                       "incomplete": ["-c", "a.c", "-o"], "stdin": ["-c", "-x", "c", "-"],
                       "two_sources": ["-c", "a.c", "b.c"], "profile": ["-c", "-fprofile-generate", "a.c"],
                       "native": ["-c", "-march=native", "a.c"], "empty_arg": ["-c", "", "a.c"]}.items():
        write("cc_command", name, "\0".join(args))


def pack(deps):
    return "".join(f"{len(k.encode())}:{k}{len(v.encode())}:{v}" for k, v in sorted(deps.items()))


def cc_deps():
    write("cc_deps", "markers", '# 1 "a.c"\n# 1 "<built-in>"\n# 1 "/usr/include/stdio.h" 1 3 4\nint x;\n'
                                '#line 7 "/src/dir//"\n# 12 "a\\\\b\\"c\\101.h" 2\n# 3 "unterminated\n')
    write("cc_deps", "trace", ". /usr/include/stdio.h\n.. /usr/include/bits/x.h\n... inc/y.h\nwarning: x\n"
                              "Multiple include guards may be useful for:\n/usr/include/bits/x.h\nin.h\n")
    write("cc_deps", "packed", pack({"/usr/include/stdio.h": "i", "/src/a.h": f"f:{HEX}/12", "/src/x": "d",
                                     "/src/inc/a.h": "-"}))
    write("cc_deps", "packed_bad", "12:/usr/include2:f:99999999999:x")
    write("cc_deps", "paths", "/src/a/../b\\x../../x/./y//z")
    write("cc_deps", "code", '/* header */\n#ifndef A_H\n#define A_H 1 // one\nint f(void); /* end */\n'
                             'char *s = "/* not */", c = \'"\';\n/* two\n   lines */ int x;\n'
                             '#define B 1 \\ /* c */\n#include <a.h> /* c */\n#endif\n\n/* tail */\n')


def project_config():
    full = {"default_priority": 5, "max_attempts": 3, "timeout_s": 60, "env": {"A": "b\nc"},
            "requirements": {"arch": "x86_64"}, "image": f"sha256:{HEX}", "cache_scope": "team",
            "compile_cache": False, "workspace": "persistent"}
    write("project_config", "full", json.dumps(full))
    write("project_config", "empty", "{}")
    write("project_config", "float", '{"timeout_s": 1e3}')
    write("project_config", "unsigned", '{"max_attempts": 18446744073709551615}')
    write("project_config", "nul_env", '{"env": {"A\\u0000": "x"}}')
    write("project_config", "unknown", '{"priority": 1}')
    write("project_config", "duplicate", '{"image": "x", "image": "sha256:' + HEX + '"}')
    write("project_config", "array", "[1, 2]")
    write("project_config", "nested", "[" * 200 + "]" * 200)
    write("project_config", "bad_utf8", b'{"env": {"A": "\xff"}}')
    write("project_config", "log_quotas", '{"log_retention": "30d", "log_max_bytes": "10GiB"}')
    write("project_config", "log_quotas_bad", '{"log_retention": "99999999999d", "log_max_bytes": -1}')


def proto(message, text):
    return subprocess.run(["protoc", f"--proto_path={REPO}/proto", f"--encode={message}", "kiln/v1/kiln.proto"],
                          input=text.encode(), capture_output=True, check=True).stdout


def requests():
    # The first byte picks the message: 0 a worker stream message, 1 a
    # StoreCompile request, 2 a name.
    msg = "kiln.v1.WorkerMessage"
    write("requests", "register", b"\0" + proto(msg, 'register { worker_id: "host-1a2b3c" hostname: "host" '
                                          'arch: "x86_64" os: "linux" slots: 4 cluster: "default" version: "0.1" '
                                          'labels { key: "gpu" value: "1" } '
                                          'workspaces { project: "web" name: "main" present: true bytes: 10 '
                                          f'root {{ hash: "{HEX}" size: 12 }} }} }}'))
    write("requests", "register_newline", b"\0" + proto(msg, 'register { worker_id: "a\\nb" arch: "x86_64" '
                                                  'cluster: "c" }'))
    write("requests", "update", b"\0" + proto(msg, 'update { job_id: 1 attempt: 1 status: SUCCEEDED '
                                        'started_at_ms: 1700000000000 finished_at_ms: 1700000001000 '
                                        f'result {{ exit_code: 0 output_root {{ hash: "{HEX}" size: 12 }} '
                                        'limit: "timeout" } }'))
    write("requests", "log", b"\0" + proto(msg, 'log { job_id: 1 attempt: 1 offset: 4096 data: "hello\\n" }'))
    write("requests", "workspace", b"\0" + proto(msg, 'workspace { project: "web" name: "feature/x+y" '
                                           'present: false }'))
    write("requests", "store", b"\1" + proto("kiln.v1.StoreCompileRequest",
                                       f'job_id: 1 attempt: 1 key: "{HEX}" '
                                       f'deps {{ key: "/src/a.h" value: "f:{HEX}/12" }} '
                                       'deps { key: "/usr/include/stdio.h" value: "i" } '
                                       f'result {{ key: "{HEX2}" object {{ hash: "{HEX}" size: 100 }} '
                                       'depfile: "a.o: a.c\\n" } '
                                       'parts { source: "a.c" output: "a.o" args: "-c" args: "a.c" }'))
    write("requests", "store_manifest_only", b"\1" + proto("kiln.v1.StoreCompileRequest",
                                                     f'job_id: 2 attempt: 3 key: "{HEX}" manifest_only: true '
                                                     f'result {{ key: "{HEX2}" }} '
                                                     'deps { key: "relative" value: "d" }'))
    for name, n in {"name": "feature/x+y", "name_dotdot": "a/../b", "name_slash": "/a", "name_empty": ""}.items():
        write("requests", name, b"\2" + n.encode())


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    for f in (digest, path, tree, oci, unpack, cc_command, cc_deps, project_config, requests):
        f()


if __name__ == "__main__":
    main()
