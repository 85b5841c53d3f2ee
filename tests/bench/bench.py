#!/usr/bin/env python3
"""Helpers for tests/bench/run.sh (standard library only).

Kubernetes side (talks to the API server directly, concurrently, with the
stack's admin token and CA from tests/stack/.env):

  seed      create namespaces, Secrets and Deployments of the scenario
  clean     empty every bench-NN namespace (Deployments and Secrets)
  paths     print the scenario's Vault paths (relative to the mount)
  drift     change one key of every 10th Secret; print the changed paths
  delete    delete every 10th Deployment; print the orphaned paths
  restore   re-create the Deployments `delete` removed
  kube-metrics   snapshot of the API server's apiserver_request_total
  cpu       cumulative CPU seconds of the stack's servers (kube-apiserver,
            etcd, bao), from /proc

Measurement side:

  audit     count Vault requests appended to the audit log since an offset
  report    runs.jsonl -> target/bench/report.json + Markdown on stdout

The scenario is a pure function of its parameters: namespace i is
`bench-<i>`, Deployment j is `d-<j>`, its Secrets `d-<j>-a`, `d-<j>-b`, ...,
keys KEY_0..KEY_<k-1>, values derived from SHA-256 of (seed, names) so every
run writes the same bytes.
"""

import argparse
import base64
import concurrent.futures as cf
import hashlib
import http.client
import json
import os
import re
import ssl
import statistics
import sys
import threading
import time
import urllib.parse

# ---------------------------------------------------------------- scenario


class Scenario:
    def __init__(self, a):
        self.namespaces = a.namespaces
        self.deployments = a.deployments
        self.secrets = a.secrets_per_deployment
        self.keys = a.keys
        self.value_bytes = a.value_bytes
        self.seed = a.seed
        self.cluster = a.cluster
        self.nsw = max(2, len(str(self.namespaces - 1)))
        self.dw = max(3, len(str(self.deployments - 1)))

    def ns(self, i):
        return f"bench-{i:0{self.nsw}d}"

    def dep(self, j):
        return f"d-{j:0{self.dw}d}"

    def secret_names(self, j):
        return [f"{self.dep(j)}-{chr(ord('a') + s)}" for s in range(self.secrets)]

    def value(self, *parts):
        out = b""
        counter = 0
        while len(out) < self.value_bytes:
            h = hashlib.sha256(f"{self.seed}/{'/'.join(map(str, parts))}/{counter}".encode())
            out += base64.b64encode(h.digest()).replace(b"+", b"x").replace(b"/", b"y").rstrip(b"=")
            counter += 1
        return out[: self.value_bytes]

    def secret_data(self, ns, name):
        return {f"KEY_{k}": self.value(ns, name, k) for k in range(self.keys)}

    def annotation_path(self, ns, j):
        return f"secret/bench/{ns}/{self.dep(j)}"

    def rel_path(self, ns, j, secret):
        """Vault path relative to the mount, as vault-sync writes it."""
        return f"clusters/{self.cluster}/bench/{ns}/{self.dep(j)}/{secret}"

    def all(self):
        """(ns, j, global deployment index)."""
        g = 0
        for i in range(self.namespaces):
            for j in range(self.deployments):
                yield self.ns(i), j, g
                g += 1

    def secret_objects(self, ns, j):
        for name in self.secret_names(j):
            yield {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": ns, "labels": {"bench": "true"}},
                "type": "Opaque",
                "data": {k: base64.b64encode(v).decode() for k, v in self.secret_data(ns, name).items()},
            }

    def deployment_object(self, ns, j):
        d = self.dep(j)
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": d,
                "namespace": ns,
                "labels": {"bench": "true"},
                "annotations": {"vault-sync.io/path": self.annotation_path(ns, j)},
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": d}},
                "template": {
                    "metadata": {"labels": {"app": d}},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "registry.invalid/bench:1",
                                "envFrom": [{"secretRef": {"name": s}} for s in self.secret_names(j)],
                            }
                        ]
                    },
                },
            },
        }


def scenario_args(p):
    e = os.environ.get
    p.add_argument("--namespaces", type=int, default=int(e("NAMESPACES", 20)))
    p.add_argument("--deployments", type=int, default=int(e("DEPLOYMENTS", 50)), help="per namespace")
    p.add_argument("--secrets-per-deployment", type=int, default=int(e("SECRETS_PER_DEPLOYMENT", 2)))
    p.add_argument("--keys", type=int, default=int(e("KEYS", 5)))
    p.add_argument("--value-bytes", type=int, default=int(e("VALUE_BYTES", 32)))
    p.add_argument("--seed", default=e("SEED", "42"))
    p.add_argument("--cluster", default=e("CLUSTER", "bench"))
    p.add_argument("--concurrency", type=int, default=int(e("SEED_CONCURRENCY", 16)))


# ---------------------------------------------------------------- kube client


class Kube:
    """Minimal thread-safe client: one keep-alive connection per thread."""

    def __init__(self):
        url = urllib.parse.urlparse(os.environ["KUBE_API_URL"])
        self.host, self.port = url.hostname, url.port
        self.ctx = ssl.create_default_context(cafile=os.environ["KUBE_CA_FILE"])
        self.token = os.environ["KUBE_ADMIN_TOKEN"]
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=120)
            self.local.conn = c
        return c

    def req(self, method, path, body=None, ctype="application/json"):
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = ctype
        for attempt in range(5):
            try:
                c = self.conn()
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
                if r.status == 429 or r.status >= 500:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                return r.status, raw
            except (http.client.HTTPException, OSError):
                self.local.conn = None
                time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"{method} {path}: gave up after retries")

    def must(self, method, path, body=None, ok=(200, 201), ctype="application/json"):
        status, raw = self.req(method, path, body, ctype)
        if status not in ok:
            raise RuntimeError(f"{method} {path}: {status} {raw[:300]!r}")
        return status, raw


def parallel(fn, items, n):
    with cf.ThreadPoolExecutor(max_workers=n) as ex:
        for f in cf.as_completed([ex.submit(fn, it) for it in items]):
            f.result()


def bench_namespaces(kube):
    _, raw = kube.must("GET", "/api/v1/namespaces")
    return sorted(
        n["metadata"]["name"] for n in json.loads(raw)["items"] if re.fullmatch(r"bench-\d+", n["metadata"]["name"])
    )


def cmd_clean(a):
    kube = Kube()
    t0 = time.time()
    nss = bench_namespaces(kube)

    def empty(ns):
        # deletecollection: one request per kind and namespace (no namespace
        # controller runs in the stack, so namespaces themselves are kept).
        kube.must("DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments")
        kube.must("DELETE", f"/api/v1/namespaces/{ns}/secrets")

    parallel(empty, nss, 4)
    print(f"[bench] emptied {len(nss)} bench namespaces in {time.time() - t0:.1f}s", file=sys.stderr)


def cmd_seed(a):
    sc = Scenario(a)
    kube = Kube()
    budget = a.budget
    t0 = time.time()
    done = 0
    for i in range(sc.namespaces):
        ns = sc.ns(i)
        kube.must(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"bench": "true"}}},
            ok=(201, 409),
        )

        def create_one(j, ns=ns):
            for s in sc.secret_objects(ns, j):
                kube.must("POST", f"/api/v1/namespaces/{ns}/secrets", s, ok=(201, 409))
            kube.must("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", sc.deployment_object(ns, j), ok=(201, 409))

        parallel(create_one, range(sc.deployments), a.concurrency)
        done += 1
        if budget and time.time() - t0 > budget and done < sc.namespaces:
            print(f"[bench] seeding budget of {budget}s exceeded: stopping after {done} namespaces", file=sys.stderr)
            break
    secs = time.time() - t0
    objs = done * sc.deployments * (1 + sc.secrets)
    print(
        json.dumps(
            {
                "namespaces": done,
                "deployments_per_namespace": sc.deployments,
                "deployments": done * sc.deployments,
                "secrets": done * sc.deployments * sc.secrets,
                "objects": objs,
                "seed_s": round(secs, 2),
                "objects_per_s": round(objs / secs, 1) if secs else None,
                "truncated": done < sc.namespaces,
            }
        )
    )


def cmd_paths(a):
    sc = Scenario(a)
    for ns, j, _ in sc.all():
        for s in sc.secret_names(j):
            print(a.prefix + sc.rel_path(ns, j, s).split(f"clusters/{sc.cluster}/", 1)[1] if a.prefix else sc.rel_path(ns, j, s))


def every(a):
    return max(1, round(1 / a.fraction))


def cmd_drift(a):
    """Changes KEY_0 of every Nth Secret (by global Secret index)."""
    sc = Scenario(a)
    kube = Kube()
    todo = []
    g = 0
    for ns, j, _ in sc.all():
        for s in sc.secret_names(j):
            if g % every(a) == 0:
                todo.append((ns, j, s))
            g += 1

    def patch(item):
        ns, _, s = item
        v = base64.b64encode(sc.value(ns, s, 0, "drift", a.round)).decode()
        kube.must(
            "PATCH",
            f"/api/v1/namespaces/{ns}/secrets/{s}",
            {"data": {"KEY_0": v}},
            ctype="application/merge-patch+json",
        )

    parallel(patch, todo, a.concurrency)
    for ns, j, s in todo:
        print(sc.rel_path(ns, j, s))


def deleted_set(sc, a):
    return [(ns, j) for ns, j, g in sc.all() if g % every(a) == 0]


def cmd_delete(a):
    sc = Scenario(a)
    kube = Kube()
    todo = deleted_set(sc, a)
    parallel(
        lambda it: kube.must("DELETE", f"/apis/apps/v1/namespaces/{it[0]}/deployments/{sc.dep(it[1])}"),
        todo,
        a.concurrency,
    )
    for ns, j in todo:
        for s in sc.secret_names(j):
            print(sc.rel_path(ns, j, s))


def cmd_restore(a):
    sc = Scenario(a)
    kube = Kube()
    parallel(
        lambda it: kube.must(
            "POST", f"/apis/apps/v1/namespaces/{it[0]}/deployments", sc.deployment_object(*it), ok=(201, 409)
        ),
        deleted_set(sc, a),
        a.concurrency,
    )


METRIC = re.compile(r'^apiserver_request_total\{(.*)\} ([0-9.e+]+)$')


def cmd_kube_metrics(a):
    kube = Kube()
    _, raw = kube.must("GET", "/metrics")
    out = {}
    for line in raw.decode().splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("verb") == "WATCH":
            continue
        key = f"{labels.get('verb')} {labels.get('resource')}"
        if labels.get("subresource"):
            key += "/" + labels["subresource"]
        out[key] = out.get(key, 0) + float(m.group(2))
    print(json.dumps(out))


STACK_PROCESSES = ("kube-apiserver", "etcd", "bao")


def cmd_cpu(a):
    """Cumulative user+system CPU seconds per stack server name, summed over
    processes of that name (utime + stime of /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {name: 0.0 for name in STACK_PROCESSES}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm is in parentheses and may hold spaces; fields follow the last ')'.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if comm in out:
            fields = stat[stat.rindex(")") + 2 :].split()
            out[comm] += (int(fields[11]) + int(fields[12])) / tick
    print(json.dumps(out))


# ---------------------------------------------------------------- audit log


def classify(op):
    if op == "read":
        return "read"
    if op in ("create", "update", "patch"):
        return "write"
    if op == "delete":
        return "delete"
    if op == "list":
        return "list"
    return "other"


def cmd_audit(a):
    """Counts type=request entries of one token (by display name)."""
    counts = {"read": 0, "write": 0, "delete": 0, "list": 0, "other": 0, "total": 0}
    detail = {}
    needle = f'"display_name":"{a.display_name}"'.encode()
    with open(a.log, "rb") as f:
        f.seek(a.offset)
        for line in f:
            if needle not in line or b'"type":"request"' not in line:
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("type") != "request" or e.get("auth", {}).get("display_name") != a.display_name:
                continue
            req = e.get("request", {})
            op = req.get("operation", "")
            path = req.get("path", "")
            kind = classify(op)
            # read = data/, metadata/ and mount-table reads; anything else
            # (token lookups) is "other" but still part of the total.
            if kind == "read" and not (
                "/data/" in path or "/metadata/" in path or path.startswith("sys/internal/ui/mounts/")
            ):
                kind = "other"
            counts[kind] += 1
            counts["total"] += 1
            if "/data/" in path:
                where = "data"
            elif "/metadata/" in path:
                where = "metadata"
            elif path.startswith("sys/internal/ui/mounts/"):
                where = "mounts"
            else:
                where = path
            if "vault-sync/index/" in path:
                where += "(index)"
            k = f"{op} {where}"
            detail[k] = detail.get(k, 0) + 1
    counts["by_operation"] = dict(sorted(detail.items()))
    print(json.dumps(counts))


# ---------------------------------------------------------------- report


def fmt_s(x):
    return "–" if x is None else f"{x:.2f}"


def cmd_report(a):
    runs = [json.loads(l) for l in open(a.runs) if l.strip()]
    scenario = json.load(open(a.scenario))
    # Group samples of the same name; the reported values are the median
    # sample's (by vault-sync wall time).
    groups = {}
    for r in runs:
        groups.setdefault(r["name"], []).append(r)
    out = []
    for name, samples in groups.items():
        ordered = sorted(samples, key=lambda r: r["wall_s"])
        med = dict(ordered[(len(ordered) - 1) // 2])
        med["repeats"] = len(samples)
        med["wall_s"] = statistics.median(r["wall_s"] for r in samples)
        floors = [r["floor_s"] for r in samples if r.get("floor_s") is not None]
        med["floor_s"] = statistics.median(floors) if floors else None
        # Each sample's floor ran right after its vault-sync run, under the
        # same load: the ratio is the median of those paired ratios.
        ratios = [r["wall_s"] / r["floor_s"] for r in samples if r.get("floor_s")]
        med["ratio"] = round(statistics.median(ratios), 2) if ratios else None
        med["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in samples)
        med["exit_code"] = max(r["exit_code"] for r in samples)
        med["samples"] = [
            {
                k: r.get(k)
                for k in ("wall_s", "floor_s", "peak_rss_bytes", "exit_code", "vault_requests", "kube_requests", "cpu_s", "floor_cpu_s")
            }
            | {"ratio": round(r["wall_s"] / r["floor_s"], 2) if r.get("floor_s") else None}
            for r in samples
        ]
        med["requests_stable"] = all(r["vault_requests"] == samples[0]["vault_requests"] for r in samples)
        out.append(med)
    report = {"scenario": scenario, "runs": out}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)

    print(f"Scenario: {scenario.get('description', '')}\n")
    print(
        "| run | paths | reps | wall s | floor s | ratio | Vault read | write | delete | list | total"
        " | floor req | kube req | kube est. | peak RSS MiB | exit | CPU s tool/kube/bao | floor CPU s tool/bao |"
    )
    print("|" + "---|" * 18)
    for r in out:
        v = r["vault_requests"]
        fr = r.get("floor_requests") or {}
        print(
            f"| {r['name']} | {r['paths']} | {r['repeats']} | {fmt_s(r['wall_s'])} | {fmt_s(r['floor_s'])} |"
            f" {'–' if r['ratio'] is None else r['ratio']} | {v['read']} | {v['write']} | {v['delete']} | {v['list']}"
            f" | {v['total']} | {fr.get('total', '–')} | {r.get('kube_requests', '–')} | {r.get('kube_requests_estimated', '–')}"
            f" | {r['peak_rss_bytes'] / 1048576:.1f} | {r['exit_code']} | {fmt_cpu(r.get('cpu_s'), True)}"
            f" | {fmt_cpu(r.get('floor_cpu_s'), False)} |"
        )
    print()
    print("wall/floor: medians over repeats; ratio: median of each run's wall / its floor run right after.")
    print("kube req: API server request-count delta (all clients); kube est.: what vault-sync alone should send")
    print("(*-list runs: --read-secrets list, a lower bound). heavy-*: the default scenario with large values.")
    print("CPU s: the median run's user+sys seconds of vault-sync (or the floor), kube-apiserver + etcd, and OpenBao.")
    print()
    targets = evaluate(out)
    print("Targets:")
    for t in targets:
        print(f"- [{'x' if t['met'] else ' '}] {t['target']}: {t['measured']}")
    report["targets"] = targets
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)


def fmt_cpu(cpu, kube):
    if not cpu:
        return "–"
    parts = [cpu.get("tool", 0)]
    if kube:
        parts.append(cpu.get("kube-apiserver", 0) + cpu.get("etcd", 0))
    parts.append(cpu.get("bao", 0))
    return " / ".join(f"{p:.2f}" for p in parts)


def evaluate(runs):
    by = {r["name"]: r for r in runs}
    t = []

    def add(target, met, measured):
        t.append({"target": target, "met": bool(met), "measured": measured})

    if "noop" in by:
        r = by["noop"]
        v = r["vault_requests"]
        add("no-op writes = 0", v["write"] == 0 and v["delete"] == 0, f"{v['write']} writes, {v['delete']} deletes")
        add(
            f"no-op total Vault requests <= paths + 5 = {r['paths'] + 5}",
            v["total"] <= r["paths"] + 5,
            f"{v['total']} ({v['total'] - r['paths']:+d} vs paths)",
        )
    if "drift" in by:
        r = by["drift"]
        add(
            "drift data writes = changed paths",
            r.get("data_writes") == r.get("changed"),
            f"{r.get('data_writes')} data writes for {r.get('changed')} changed paths "
            f"({r['vault_requests']['write']} write requests in all)",
        )
    for name in ("cold", "noop", "cold-list", "noop-list"):
        if name in by and by[name].get("ratio") is not None:
            add(f"{name} wall <= 1.3 x floor", by[name]["ratio"] <= 1.3, f"{by[name]['ratio']} x")
    # small: the default scenario's runs (all modes, the sweep included), not
    # the scaled or heavy-value ones.
    small = [r for r in runs if not r["name"].startswith(("scale", "heavy"))]
    base = [r for r in small if r["name"] in ("cold", "noop", "drift", "prune")]
    heavy = [r for r in runs if r["name"].startswith("heavy")]
    if base and heavy:
        # A batch holds about 8 MiB of Secret values (core::batch): memory
        # may grow by that and by responses in flight, never with the total.
        b = max(r["peak_rss_bytes"] for r in base)
        h = max(heavy, key=lambda r: r["peak_rss_bytes"])
        total = max(r.get("total_value_bytes") or 0 for r in heavy)
        grow = h["peak_rss_bytes"] - b
        add(
            "peak RSS not proportional to Secret bytes (heavy runs <= cold/noop/drift/prune + 16 MiB:"
            " one batch's 8 MiB of values plus responses in flight)",
            grow <= 16 * 1048576,
            f"{h['peak_rss_bytes'] / 1048576:.1f} MiB ({h['name']}, {h.get('value_bytes')} B values,"
            f" {total / 1048576:.1f} MiB of values in all) vs {b / 1048576:.1f} MiB: +{grow / 1048576:.1f} MiB",
        )
    if small:
        peak = max(r["peak_rss_bytes"] for r in small)
        add("peak RSS <= 40 MiB at 2,000 paths", peak <= 40 * 1048576, f"{peak / 1048576:.1f} MiB (max over runs)")
        # All scale-* runs, --read-secrets get and list alike (as small).
        scaled = [r for r in runs if r["name"].startswith("scale")]
        if scaled:
            big = max(scaled, key=lambda r: r["peak_rss_bytes"])
            grow = big["peak_rss_bytes"] / peak
            add(
                "peak RSS flat-ish at scale (<= 2 x the small runs' peak; all scale-* runs, get and list)",
                grow <= 2,
                f"{big['peak_rss_bytes'] / 1048576:.1f} MiB at {big['paths']} paths ({big['name']}) = {grow:.1f} x; "
                f"{(big['peak_rss_bytes'] - peak) / (big['paths'] - small[0]['paths']) / 1024:.1f} KiB per extra path",
            )
    # Issue #19: at the scaled run's size, every run kind within the
    # CronJob's 128 MiB limit with room to spare, and cold/drift near the floor.
    scaled = [r for r in runs if r["name"].startswith("scale")]
    if scaled:
        big = max(scaled, key=lambda r: r["peak_rss_bytes"])
        add(
            f"peak RSS <= 64 MiB at {big['paths']} paths (every scale-* run)",
            big["peak_rss_bytes"] <= 64 * 1048576,
            f"{big['peak_rss_bytes'] / 1048576:.1f} MiB ({big['name']})",
        )
        for name in ("scale-cold", "scale-drift"):
            if name in by and by[name].get("ratio") is not None:
                add(f"{name} wall <= 1.3 x floor", by[name]["ratio"] <= 1.3, f"{by[name]['ratio']} x")
    return t


# ---------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("seed", "clean", "paths", "drift", "delete", "restore", "kube-metrics"):
        s = sub.add_parser(name)
        scenario_args(s)
        if name == "seed":
            s.add_argument("--budget", type=float, default=0, help="stop after the namespace that exceeds N seconds")
        if name == "paths":
            s.add_argument("--prefix", default="", help="replace clusters/<cluster>/ with this prefix")
        if name in ("drift", "delete", "restore"):
            s.add_argument("--fraction", type=float, default=0.1)
        if name == "drift":
            s.add_argument("--round", type=int, default=1)
    sub.add_parser("cpu")
    s = sub.add_parser("audit")
    s.add_argument("--log", required=True)
    s.add_argument("--offset", type=int, required=True)
    s.add_argument("--display-name", required=True)
    s = sub.add_parser("report")
    s.add_argument("--runs", required=True)
    s.add_argument("--scenario", required=True)
    s.add_argument("--out", required=True)
    a = p.parse_args()
    {
        "seed": cmd_seed,
        "clean": cmd_clean,
        "paths": cmd_paths,
        "drift": cmd_drift,
        "delete": cmd_delete,
        "restore": cmd_restore,
        "kube-metrics": cmd_kube_metrics,
        "cpu": cmd_cpu,
        "audit": cmd_audit,
        "report": cmd_report,
    }[a.cmd](a)


if __name__ == "__main__":
    main()
