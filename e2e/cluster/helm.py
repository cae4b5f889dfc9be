#!/usr/bin/env python3
"""Installs and uninstalls the chart with Helm's own library (PyPI helm-python-sdk, Helm v4's Go SDK
behind a C ABI: no helm binary needed), for tests/operator_helm.rs.

    helm.py install KUBECONFIG RELEASE NAMESPACE CHART_DIR VALUES_JSON   waits until ready; like
        `helm install --skip-crds` (the CRD is applied server-side first, as the README shows: Helm
        v4 would otherwise conflict with that apply's field manager)
    helm.py uninstall KUBECONFIG RELEASE NAMESPACE
Prints one JSON line: {"status": ...}.
"""
import json
import shutil
import sys
import tempfile

from helm_python import Config


def main():
    command, kubeconfig, release, namespace = sys.argv[1:5]
    config = Config(kubeconfig_path=kubeconfig, namespace=namespace)
    if command == "install":
        chart, values = sys.argv[5], json.loads(sys.argv[6])
        with tempfile.TemporaryDirectory() as scratch:
            # The SDK has no skip-crds option: install a copy of the chart without crds/.
            copy = shutil.copytree(chart, f"{scratch}/chart", ignore=shutil.ignore_patterns("crds"))
            result = config.install(copy, release, values, namespace=namespace,
                                    create_namespace=True, wait="watcher", timeout=240)
        status = (result.get("info") or {}).get("status") if isinstance(result, dict) else None
        print(json.dumps({"status": status or "installed"}))
    elif command == "uninstall":
        config.uninstall(release, wait="watcher", timeout=120, ignore_not_found=True)
        print(json.dumps({"status": "uninstalled"}))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
