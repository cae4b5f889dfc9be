#!/usr/bin/env python3
"""Packs the chaincode-operator binary into a one-layer OCI image archive, for the cluster tests that
run the operator in-cluster from the Helm chart (the test cluster has no registry access to a
published image). The layer holds the binary and the shared libraries `ldd` names; the image runs
as 65532, the chart's user. Import it with `ctr -n k8s.io images import OUT.tar`.

    operator-image.py BINARY OUT.tar NAME:TAG      prints the manifest digest (sha256:...)
"""
import hashlib
import io
import json
import subprocess
import sys
import tarfile


def libraries(binary):
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            paths.append(parts[2])
        elif parts and parts[0].startswith("/"):
            paths.append(parts[0])
    return paths


def layer(binary):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add_dir(name, mode=0o755):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)

        def add_file(source, name, mode):
            with open(source, "rb") as handle:
                data = handle.read()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))

        made = set()
        for directory in ["tmp", "usr", "usr/local", "usr/local/bin"]:
            add_dir(directory, 0o1777 if directory == "tmp" else 0o755)
            made.add(directory)
        add_file(binary, "usr/local/bin/chaincode-operator", 0o755)
        for path in libraries(binary):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                directory = "/".join(parts[:i])
                if directory not in made:
                    add_dir(directory)
                    made.add(directory)
            add_file(path, path.strip("/"), 0o755)
    return buffer.getvalue()


def main():
    binary, out, name = sys.argv[1:4]
    blobs = {}

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    layer_bytes = layer(binary)
    layer_digest = blob(layer_bytes)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/usr/local/bin/chaincode-operator"], "User": "65532:65532"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }, sort_keys=True).encode()
    config_digest = blob(config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer_bytes)}],
    }, sort_keys=True).encode()
    manifest_digest = blob(manifest)
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": len(manifest),
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": name}}],
    }).encode()
    with tarfile.open(out, mode="w") as tar:
        def put(path, data):
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))

        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", index)
        for digest, data in blobs.items():
            put("blobs/sha256/" + digest.split(":", 1)[1], data)
    print(manifest_digest)


if __name__ == "__main__":
    main()
