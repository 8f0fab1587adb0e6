"""Render and lint deploy/helm/storefold with Helm's own Go SDK, without a cluster.

The `helm` CLI is not installable from the package registries this project uses;
the PyPI package helm-python-sdk ships Helm's SDK (v4) as a shared library and
binds it with ctypes. tests/tests/it/ops.rs runs this script.

usage: python3 helm_render.py CHART OUT_DIR [VALUES.yaml ...]

Writes each rendered manifest to OUT_DIR (templates/<name>.yaml) and prints one
JSON object: {"lint": {...}, "files": [...], "release": ..., "namespace": ...}.
Exits 1 when linting reports errors or a template fails to render.
"""

import json
import os
import sys

import helm_python as helm  # pip: helm-python-sdk (see deploy/requirements-test.txt)


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    chart_dir, out_dir, value_files = sys.argv[1], sys.argv[2], sys.argv[3:]
    values: dict = {}
    for path in value_files:
        with open(path, encoding="utf-8") as f:
            values = deep_merge(values, helm.values_from_yaml(f.read()))
    lint = helm.lint(chart_dir, values=values, strict=True, namespace="storefold")
    release, namespace = "shop", "storefold"
    with helm.Chart.load(chart_dir) as chart:
        manifests = chart.render(values, name=release, namespace=namespace,
                                 revision=1, is_install=True)
    os.makedirs(out_dir, exist_ok=True)
    files = []
    for name, text in sorted(manifests.items()):
        if not name.endswith(".yaml") or not text.strip():
            continue
        target = os.path.join(out_dir, name.split("/templates/", 1)[-1])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
        files.append(target)
    print(json.dumps({"lint": lint, "files": files, "release": release,
                      "namespace": namespace}))
    return 1 if lint.get("errors") else 0


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


if __name__ == "__main__":
    sys.exit(main())
