#!/usr/bin/env python3
"""Packs a staged root filesystem into a single-layer OCI image archive,
without a container daemon, deterministically: the same files give the same
digest (entries sorted, owner root, mtime 0, gzip without name or time, JSON
with sorted keys, no `created` time).

    image/mkimage.py ROOTFS OUT.tar --name REF --containerfile Containerfile
        [--build-arg K=V]...
    image/mkimage.py ROOTFS OUT.tar --name REF --entrypoint JSON   (a helper
        image such as the test cluster's sandbox; runs as root)

The image settings come from the Containerfile's final stage, which must be
`FROM scratch` plus the rootfs COPY and only ARG, ENV, LABEL, USER,
WORKDIR and ENTRYPOINT (exec form): anything else is refused, so this build
and `podman build -f Containerfile` cannot silently differ.

OUT.tar is an OCI image layout in a tar (oci-layout, index.json, blobs/);
`ctr images import OUT.tar` and `skopeo copy oci-archive:OUT.tar ...` read it.
The index names the image REF (annotations io.containerd.image.name and
org.opencontainers.image.ref.name). Prints one JSON line: name, digest
(the manifest's), config digest, layer sizes.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import stat
import sys
import tarfile

EPOCH = 0


def layer_tar(rootfs):
    """The rootfs as an uncompressed tar, entries in sorted order."""
    buf = io.BytesIO()
    entries = []
    for dirpath, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            entries.append(os.path.relpath(full, rootfs))
    entries.sort()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for rel in entries:
            full = os.path.join(rootfs, rel)
            st = os.lstat(full)
            info = tarfile.TarInfo(rel)
            info.mtime = EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(full)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                sys.exit(f"mkimage.py: {rel}: not a file, directory or symlink")
    return buf.getvalue()


def canonical(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pairs(items, what):
    out = {}
    for item in items:
        if "=" not in item:
            sys.exit(f"mkimage.py: --{what} {item!r}: expected K=V")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def containerfile_settings(path, build_args):
    """USER, ENTRYPOINT, ENV, LABEL and WORKDIR of the final stage."""
    text = open(path).read()
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    stages = [i for i, l in enumerate(lines) if l.split()[0].upper() == "FROM"]
    if not stages:
        sys.exit(f"mkimage.py: {path}: no FROM")
    final = lines[stages[-1]:]
    if final[0].split()[1:] != ["scratch"]:
        sys.exit(f"mkimage.py: {path}: the final stage must be FROM scratch, not {final[0]!r}")
    args = {}
    out = {"User": None, "Entrypoint": None, "Env": [], "Labels": {}, "WorkingDir": "/"}

    def subst(value):
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), value)

    for line in final[1:]:
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "ARG":
            k, _, default = rest.partition("=")
            args[k] = build_args.get(k, default)
        elif op == "COPY":
            if rest.split() != ["--from=build", "/rootfs", "/"]:
                sys.exit(f"mkimage.py: {path}: unexpected COPY {rest!r} (only the staged /rootfs)")
        elif op in ("ENV", "LABEL"):
            for tok in shlex.split(rest):
                k, eq, v = tok.partition("=")
                if not eq:
                    sys.exit(f"mkimage.py: {path}: {op} {tok!r}: use the K=V form")
                if op == "ENV":
                    out["Env"].append(f"{k}={subst(v)}")
                else:
                    out["Labels"][k] = subst(v)
        elif op == "USER":
            out["User"] = subst(rest)
        elif op == "WORKDIR":
            out["WorkingDir"] = subst(rest)
        elif op == "ENTRYPOINT":
            try:
                out["Entrypoint"] = json.loads(rest)
            except ValueError:
                sys.exit(f"mkimage.py: {path}: ENTRYPOINT must be the exec (JSON) form")
        else:
            sys.exit(f"mkimage.py: {path}: {op} in the final stage is not reproduced by this build")
    unknown = set(build_args) - set(args)
    if unknown:
        sys.exit(f"mkimage.py: build args {sorted(unknown)} are not ARGs of the final stage")
    if not out["User"] or not out["Entrypoint"]:
        sys.exit(f"mkimage.py: {path}: the final stage needs USER and ENTRYPOINT")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rootfs")
    p.add_argument("out")
    p.add_argument("--name", required=True)
    p.add_argument("--containerfile")
    p.add_argument("--build-arg", action="append", default=[])
    p.add_argument("--entrypoint", help="JSON list (without --containerfile)")
    a = p.parse_args()
    if bool(a.containerfile) == bool(a.entrypoint):
        sys.exit("mkimage.py: give either --containerfile or --entrypoint")
    if a.containerfile:
        settings = containerfile_settings(a.containerfile, pairs(a.build_arg, "build-arg"))
    else:
        settings = {"User": "0:0", "Entrypoint": json.loads(a.entrypoint), "Env": [],
                    "Labels": {}, "WorkingDir": "/"}

    layer = layer_tar(a.rootfs)
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=gz, mode="wb", compresslevel=9, mtime=EPOCH) as z:
        z.write(layer)
    layer_gz = gz.getvalue()

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": settings,
        "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
    }
    config_b = canonical(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(config_b),
            "size": len(config_b),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha(layer_gz),
                "size": len(layer_gz),
            }
        ],
        "annotations": config["config"]["Labels"],
    }
    manifest_b = canonical(manifest)
    tag = a.name.rsplit("/", 1)[-1].split(":", 1)[-1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(manifest_b),
                "size": len(manifest_b),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": a.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    files = {
        "oci-layout": canonical({"imageLayoutVersion": "1.0.0"}),
        "index.json": canonical(index),
    }
    for blob in (layer_gz, config_b, manifest_b):
        files["blobs/sha256/" + sha(blob)[7:]] = blob

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tar.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, EPOCH
            tar.addfile(info, io.BytesIO(files[name]))
    os.replace(tmp, a.out)
    print(json.dumps({
        "name": a.name,
        "digest": sha(manifest_b),
        "config": sha(config_b),
        "layer_bytes": len(layer),
        "layer_gzip_bytes": len(layer_gz),
    }, sort_keys=True))


if __name__ == "__main__":
    main()
