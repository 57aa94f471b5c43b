#!/usr/bin/env python3
"""The Dockerfile builds what the tests use:
  - its build commands (between "# BEGIN build commands" and "# END build
    commands") are exactly the README's "Build from source" block;
  - with --build DIR: every binary it copies exists in DIR, and the runtime
    stage installs the Debian package of every library those binaries need
    (readelf NEEDED -> ldconfig -> dpkg -S);
  - its stages start FROM the registry's debian:bookworm and
    debian:bookworm-slim by default (build arguments that `make image`
    replaces only where no registry is reachable), and the runtime stage
    carries the OCI labels version, revision and source.
usage: check_dockerfile.py --root REPO [--build DIR]"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

README_MARK = "<!-- build commands: deploy/docker/Dockerfile -->"


def dockerfile_build_commands(text):
    m = re.search(r"# BEGIN build commands[^\n]*\n(.*?)# END build commands", text, re.S)
    if not m:
        raise SystemExit("Dockerfile: no BEGIN/END build commands block")
    cmds = []
    for line in m.group(1).splitlines():
        line = line.strip()
        if line.startswith("RUN "):
            cmds.append(line[4:].strip())
    return cmds


def readme_build_commands(text):
    i = text.find(README_MARK)
    if i < 0:
        raise SystemExit(f"README.md: marker {README_MARK!r} not found")
    m = re.search(r"```sh\n(.*?)```", text[i:], re.S)
    if not m:
        raise SystemExit("README.md: no ```sh block after the build-commands marker")
    cmds = []
    for line in m.group(1).splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            cmds.append(line)
    return cmds


BASE_IMAGES = ["debian:bookworm", "debian:bookworm-slim"]
LABELS = ["org.opencontainers.image.version", "org.opencontainers.image.revision",
          "org.opencontainers.image.source"]


def base_images(text):
    """The FROM images with the global ARG defaults filled in."""
    text = text.replace("\\\n", " ")
    args, froms = {}, []
    for line in text.splitlines():
        m = re.match(r"\s*ARG\s+(\w+)=(\S+)", line)
        if m and not froms:
            args[m.group(1)] = m.group(2)
        m = re.match(r"\s*FROM\s+(\S+)", line, re.I)
        if m:
            froms.append(re.sub(r"\$\{(\w+)\}", lambda v: args.get(v.group(1), v.group(0)), m.group(1)))
    return froms


def missing_labels(text):
    stage = text.split("AS runtime", 1)[-1]
    return [k for k in LABELS if not re.search(rf"\b{re.escape(k)}=\"?\$\{{\w+\}}", stage)]


def runtime_packages(text):
    stage = text.split("AS runtime", 1)
    if len(stage) != 2:
        raise SystemExit("Dockerfile: no runtime stage")
    m = re.search(r"apt-get install(.*?)&&", stage[1].replace("\\\n", " "), re.S)
    if not m:
        raise SystemExit("Dockerfile: the runtime stage installs no packages")
    return {w for w in m.group(1).split() if not w.startswith("-")}


def copied_binaries(text):
    m = re.search(r"cp ((?:build/\S+\s+(?:\\\s*)?)+)/out/bin/", text)
    if not m:
        raise SystemExit("Dockerfile: no `cp build/... /out/bin/` line")
    return [w for w in m.group(1).split() if w.startswith("build/")]


def needed_packages(binary):
    out = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"\(NEEDED\).*\[(.+?)\]", out)
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    pkgs = {}
    for lib in libs:
        m = re.search(rf"^\s*{re.escape(lib)} \(.*?\) => (\S+)", cache, re.M)
        if not m:
            pkgs[lib] = None
            continue
        pkgs[lib] = None
        # dpkg knows a file by the path its package ships (merged /usr: one
        # of the two), and the soname may be a symlink to the real file
        for path in (m.group(1), str(Path(m.group(1)).resolve())):
            r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
            if r.returncode == 0:
                pkgs[lib] = r.stdout.split(":", 1)[0]
                break
    return pkgs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build")
    a = ap.parse_args()
    root = Path(a.root)
    df = (root / "deploy/docker/Dockerfile").read_text()
    errs = []
    d_cmds = dockerfile_build_commands(df)
    r_cmds = readme_build_commands((root / "README.md").read_text())
    if d_cmds != r_cmds:
        errs.append(f"build commands differ:\n  Dockerfile: {d_cmds}\n  README:     {r_cmds}")
    if base_images(df) != BASE_IMAGES:
        errs.append(f"base images {base_images(df)}: by default they must be {BASE_IMAGES}")
    for k in missing_labels(df):
        errs.append(f"runtime stage: no {k} label from a build argument")
    if a.build:
        want = runtime_packages(df)
        for rel in copied_binaries(df):
            b = Path(a.build) / Path(rel).relative_to("build")
            if not b.exists():
                errs.append(f"{b}: the Dockerfile copies it but the build has no such binary")
                continue
            for lib, pkg in needed_packages(b).items():
                if pkg is None:
                    errs.append(f"{b.name}: cannot tell which package provides {lib}")
                elif pkg not in want and not pkg.startswith("libc6"):
                    errs.append(f"{b.name}: needs {lib} from {pkg}, not installed by the runtime stage")
    for e in errs:
        print(e, file=sys.stderr)
    print(f"check_dockerfile: {len(errs)} problem(s)", file=sys.stderr)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
