#!/usr/bin/env python3
"""Checks an .ipk made by scripts/build-ipk.sh against openwrt/bulkhead/Makefile.

Unpacks it with tar and gzip (as opkg would read it) and compares, with the
Makefile read on its own (not through build-ipk.sh):
- the container: a gzip'd tar of ./debian-binary ("2.0"), ./data.tar.gz,
  ./control.tar.gz, in that order;
- the files: exactly those Package/bulkhead/install puts in $(1), with
  INSTALL_BIN/INSTALL_CONF/INSTALL_DATA's modes, owned by 0:0;
- control: Package, Version (PKG_VERSION-PKG_RELEASE), Depends (libc and the
  +DEPENDS), License, Section, URL, Maintainer, Architecture, Installed-Size
  (the bytes of data.tar);
- conffiles: the Makefile's, each a file in the package;
- the binary: an ELF for the package's CPU.

    scripts/check-ipk.py PACKAGE.ipk ARCH
Exits 1 with every difference listed.
"""

import os
import re
import subprocess
import sys
import tempfile

MAKEFILE = os.path.join(os.path.dirname(__file__), "..", "openwrt", "bulkhead", "Makefile")
MODES = {"$(INSTALL_BIN)": 0o755, "$(INSTALL_CONF)": 0o600, "$(INSTALL_DATA)": 0o644}
# ELF e_machine and byte order (EI_DATA: 1 little, 2 big endian) per OpenWrt
# architecture prefix, longest first (mipsel_ before mips_).
MACHINES = {"aarch64": (183, 1), "arm": (40, 1), "x86_64": (62, 1), "mipsel": (8, 1), "mips": (8, 2)}


def makefile():
    text = open(MAKEFILE).read()
    var = lambda n: re.search(rf"^{n}:=(.*)$", text, re.M).group(1).strip()
    block = lambda name: re.search(rf"^define Package/bulkhead{name}\n(.*?)^endef", text, re.M | re.S).group(1)
    package = block("")
    pkgvar = lambda n: re.search(rf"^  {n}:=(.*)$", package, re.M).group(1).strip()
    files = {}
    for line in block("/install").splitlines():
        words = line.split()
        if words and words[0] in MODES:
            dest = words[-1]
            assert dest.startswith("$(1)/"), line
            files[dest[len("$(1)"):]] = MODES[words[0]]
    depends = [d[1:] for d in pkgvar("DEPENDS").split() if d.startswith("+")]
    description = [l[2:] if l.startswith("  ") else l for l in block("/description").splitlines()]
    return {
        "Package": var("PKG_NAME"),
        "Version": f'{var("PKG_VERSION")}-{var("PKG_RELEASE")}',
        "Depends": ", ".join(["libc"] + depends),
        "License": var("PKG_LICENSE"),
        "Section": pkgvar("SECTION"),
        "URL": pkgvar("URL"),
        "Maintainer": var("PKG_MAINTAINER"),
        "files": files,
        "conffiles": [l for l in block("/conffiles").splitlines() if l.strip()],
        "description": description,
    }


def tar_list(path):
    out = subprocess.run(
        ["tar", "--numeric-owner", "-tvzf", path], check=True, capture_output=True, text=True
    ).stdout
    entries = []
    for line in out.splitlines():
        # -rwxr-xr-x 0/0 123 2026-12-07 06:00 ./usr/sbin/bulkhead
        perms, owner, size, _date, _time, name = line.split(None, 5)
        entries.append((perms, owner, int(size), name))
    return entries


def mode_of(perms):
    bits = 0
    for ch, bit in zip(perms[1:], [0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1]):
        if ch != "-":
            bits |= bit
    return bits


def main():
    ipk, arch = sys.argv[1], sys.argv[2]
    want = makefile()
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        outer = [e[3] for e in tar_list(ipk)]
        if outer != ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]:
            problems.append(f"outer members {outer}")
        subprocess.run(["tar", "-xzf", os.path.abspath(ipk)], cwd=tmp, check=True)
        if open(os.path.join(tmp, "debian-binary")).read() != "2.0\n":
            problems.append("debian-binary is not 2.0")

        data = os.path.join(tmp, "data.tar.gz")
        entries = tar_list(data)
        got_files = {}
        for perms, owner, _size, name in entries:
            if owner != "0/0":
                problems.append(f"{name} is owned by {owner}, not 0/0")
            if perms.startswith("-"):
                got_files[name[1:]] = mode_of(perms)
        if got_files != want["files"]:
            problems.append(f"files differ: package {sorted(got_files.items())} vs Makefile {sorted(want['files'].items())}")
        data_tar_bytes = len(subprocess.run(["gzip", "-dc", data], check=True, capture_output=True).stdout)

        ctl_dir = os.path.join(tmp, "ctl")
        os.mkdir(ctl_dir)
        subprocess.run(["tar", "-xzf", os.path.join(tmp, "control.tar.gz")], cwd=ctl_dir, check=True)
        control = {}
        description = []
        for line in open(os.path.join(ctl_dir, "control")).read().splitlines():
            if line.startswith(" "):
                description.append(line[1:])
            elif ": " not in line:
                problems.append(f"control line {line!r} is neither a field nor a continuation")
            else:
                key, _, value = line.partition(": ")
                control[key] = value
                if key == "Description":
                    description.append(value.lstrip(" "))
        for key in ["Package", "Version", "Depends", "License", "Section", "URL", "Maintainer"]:
            if control.get(key) != want[key]:
                problems.append(f"control {key}: {control.get(key)!r}, Makefile {want[key]!r}")
        if control.get("Architecture") != arch:
            problems.append(f"control Architecture: {control.get('Architecture')!r}, want {arch!r}")
        if control.get("Installed-Size") != str(data_tar_bytes):
            problems.append(f"Installed-Size {control.get('Installed-Size')} is not data.tar's {data_tar_bytes} bytes")
        if description != want["description"]:
            problems.append(f"Description {description} vs Makefile {want['description']}")
        conffiles = open(os.path.join(ctl_dir, "conffiles")).read().split()
        if conffiles != want["conffiles"]:
            problems.append(f"conffiles {conffiles} vs Makefile {want['conffiles']}")
        for c in conffiles:
            if c not in got_files:
                problems.append(f"conffile {c} is not in the package")
        for script in ["postinst", "prerm"]:
            path = os.path.join(ctl_dir, script)
            if not os.access(path, os.X_OK) or f"default_{script}" not in open(path).read():
                problems.append(f"control/{script} is missing or does not call default_{script}")

        subprocess.run(["tar", "-xzf", data, "./usr/sbin/bulkhead"], cwd=tmp, check=True)
        elf = open(os.path.join(tmp, "usr/sbin/bulkhead"), "rb").read(20)
        order = elf[5]
        machine = int.from_bytes(elf[18:20], "little" if order == 1 else "big")
        want = next(m for prefix, m in MACHINES.items() if arch.startswith(prefix))
        if elf[:4] != b"\x7fELF" or (machine, order) != want:
            problems.append(f"/usr/sbin/bulkhead is not an ELF for {arch} (e_machine {machine}, EI_DATA {order})")

    if problems:
        print(f"check-ipk: {ipk} does not match {os.path.normpath(MAKEFILE)}:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        sys.exit(1)
    print(f"check-ipk: {ipk}: {len(got_files)} files, control and conffiles match the Makefile")


if __name__ == "__main__":
    main()
