#!/usr/bin/env python3
"""Checks of rendered manifests that the Kubernetes schemas cannot express,
and strict validation of KEDA objects against KEDA's CRDs.

usage: check_manifests.py --crds DIR RENDERED.yaml...
Exit 1 with one line per problem."""
import argparse
import re
import sys
from pathlib import Path

import jsonschema
import yaml

# A name ending in _DIR names a directory (LATTICE_SECRETS_DIR), not a secret.
SECRETISH = re.compile(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY)(?!.*_DIR$)", re.I)


def strict(schema):
    """CRD schemas prune unknown fields; kubectl --validate=strict rejects
    them. Emulate strict: objects with properties accept nothing else unless
    the CRD says x-kubernetes-preserve-unknown-fields."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()
               if not k.startswith("x-kubernetes-")}
        if (schema.get("type") == "object" and "properties" in schema
                and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def load_crds(crd_dir):
    schemas = {}
    for f in Path(crd_dir).glob("*.yaml"):
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"]
            for ver in doc["spec"]["versions"]:
                s = strict(ver["schema"]["openAPIV3Schema"])
                # metadata is checked by the API server, not the CRD
                s.get("properties", {}).pop("metadata", None)
                schemas[(f"{group}/{ver['name']}", kind)] = s
    return schemas


def pod_spec(obj):
    k = obj["kind"]
    if k in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if k == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def check(objs, crds, name):
    errs = []
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    config = {}
    for o in objs:
        if o["kind"] == "ConfigMap":
            config.update(o.get("data", {}))
    for o in objs:
        where = f"{name}: {o['kind']}/{o['metadata']['name']}"
        api = o["apiVersion"]
        if api.startswith("keda.sh/"):
            s = crds.get((api, o["kind"]))
            if not s:
                errs.append(f"{where}: no KEDA CRD for {api} {o['kind']}")
            else:
                body = {k: v for k, v in o.items() if k != "metadata"}
                for e in jsonschema.Draft7Validator(s).iter_errors(body):
                    errs.append(f"{where}: KEDA CRD: {'/'.join(map(str, e.path))}: {e.message}")
        if o["kind"] == "ConfigMap":
            for k in o.get("data", {}):
                if SECRETISH.search(k):
                    errs.append(f"{where}: {k} looks like a secret; put it in a Secret")
        spec = pod_spec(o)
        if spec is None:
            continue
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
            errs.append(f"{where}: runAsNonRoot must be true")
        for c in spec.get("initContainers", []) + spec["containers"]:
            cw = f"{where} container {c['name']}"
            img = c.get("image", "")
            if img.endswith(":latest") or ":" not in img.rsplit("/", 1)[-1]:
                errs.append(f"{cw}: image {img!r} must have a fixed tag")
            if "memory" not in c.get("resources", {}).get("limits", {}):
                errs.append(f"{cw}: no memory limit")
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True:
                errs.append(f"{cw}: needs allowPrivilegeEscalation=false, readOnlyRootFilesystem=true")
            for e in c.get("env", []):
                if SECRETISH.search(e["name"]) and "value" in e:
                    errs.append(f"{cw}: {e['name']} has an inline value; use a secretKeyRef")
        if o["kind"] == "Deployment":
            for c in spec["containers"]:
                for p in ("livenessProbe", "readinessProbe"):
                    if p not in c:
                        errs.append(f"{where} container {c['name']}: no {p}")
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "lattice-worker":
            drain = int(config.get("LATTICE_WORKER_DRAIN_TIMEOUT_S", "25"))
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace < drain + 15:
                errs.append(f"{where}: terminationGracePeriodSeconds {grace} must exceed the drain "
                            f"({drain} s) by at least 15 s")
            stop = int(config.get("LATTICE_WORKER_SHUTDOWN_TIMEOUT_S", "50"))
            if not drain < stop < grace:
                errs.append(f"{where}: LATTICE_WORKER_SHUTDOWN_TIMEOUT_S {stop} must lie between "
                            f"the drain ({drain} s) and terminationGracePeriodSeconds {grace}")
    so = by.get(("ScaledObject", "lattice-worker"))
    dep = by.get(("Deployment", "lattice-worker"))
    if not so or not dep:
        errs.append(f"{name}: the worker Deployment and its KEDA ScaledObject must both exist")
    else:
        trig = so["spec"]["triggers"][0]["metadata"]
        if trig.get("consumerGroup") != config.get("LATTICE_WORKER_GROUP_ID"):
            errs.append(f"{name}: ScaledObject consumerGroup != LATTICE_WORKER_GROUP_ID")
        if trig.get("topic") != config.get("LATTICE_TOPIC_COMMANDS"):
            errs.append(f"{name}: ScaledObject topic != LATTICE_TOPIC_COMMANDS")
        if "replicas" in dep["spec"]:
            errs.append(f"{name}: the worker Deployment must not set replicas (KEDA owns them)")
    if ("Deployment", "lattice-watcher") in by:
        wg = config.get("LATTICE_WATCHER_GROUP_ID", "lattice-watcher")
        if wg == config.get("LATTICE_WORKER_GROUP_ID", "lattice-mail-worker"):
            errs.append(f"{name}: LATTICE_WATCHER_GROUP_ID must not be the workers' group "
                        f"(the watcher would take command partitions from the workers)")
        if ("PodDisruptionBudget", "lattice-watcher") not in by:
            errs.append(f"{name}: the watcher Deployment needs its PodDisruptionBudget")
    return errs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crds", required=True)
    ap.add_argument("rendered", nargs="+")
    a = ap.parse_args()
    crds = load_crds(a.crds)
    errs = []
    for f in a.rendered:
        objs = [d for d in yaml.safe_load_all(Path(f).read_text()) if d]
        errs += check(objs, crds, Path(f).stem)
    for e in errs:
        print(e, file=sys.stderr)
    print(f"check_manifests: {len(a.rendered)} overlay(s), {len(errs)} problem(s)", file=sys.stderr)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
