#!/usr/bin/env bash
# Rebuilds ccdriver.sys from ccdriver.c, ccchained.sys from ccchained.s, and ccsymbols.sys with
# ccsymbols.pdb from ccsymbols.c, with the Swift toolchain's clang and lld-link (a real
# Windows-targeting compiler, assembler and linker), and lists the return sites of the first two
# in ccdriver.sites and ccchained.sites:
#   FUNCTION OFFSET CALLEE   (the address after each call, as an offset in FUNCTION)
# The tests read both; rebuild only when ccdriver.c changes, and commit the results.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang --target=x86_64-pc-windows-msvc -O2 -fno-stack-protector -mno-stack-arg-probe -c ccdriver.c -o "$work/ccdriver.obj"
# /Brepro makes the output the same on every rebuild (TimeDateStamp is then a hash of it).
lld-link /driver /subsystem:native /entry:CcDispatch /nodefaultlib /Brepro /implib:"$work/ccdriver.lib" /out:ccdriver.sys "$work/ccdriver.obj"
# ccsymbols.sys and its PDB: -gcodeview and /debug make lld-link write the PDB (types, module
# procedures, publics). The compiler and linker record their working directory in the PDB, so
# they run in one fixed directory with relative paths, and a rebuild gives the same bytes.
fixed=/tmp/dumpfleet-ccsymbols
rm -rf "$fixed" && mkdir -p "$fixed" && cp ccsymbols.c "$fixed/"
(cd "$fixed" && clang --target=x86_64-pc-windows-msvc -O2 -g -gcodeview -fdebug-compilation-dir=. -fno-stack-protector -mno-stack-arg-probe \
    -c ccsymbols.c -o ccsymbols.obj \
    && lld-link /driver /subsystem:native /entry:CcsDispatchRequest /nodefaultlib /Brepro /debug /pdb:ccsymbols.pdb /pdbaltpath:ccsymbols.pdb \
       /implib:ccsymbols.lib /out:ccsymbols.sys ccsymbols.obj)
cp "$fixed/ccsymbols.sys" "$fixed/ccsymbols.pdb" . && rm -rf "$fixed"
# ccchained.sys: chained unwind info, from assembly (clang's assembler writes the records).
clang --target=x86_64-pc-windows-msvc -c ccchained.s -o "$work/ccchained.obj"
lld-link /driver /subsystem:native /entry:CcCallChained /nodefaultlib /Brepro /export:CcCallChained /export:CcSavesByMove /export:CcChained \
    /export:CcChainedCold /implib:"$work/ccchained.lib" /out:ccchained.sys "$work/ccchained.obj"
# llvm-objdump prints "ADDRESS <Function>:" headers and "ADDRESS: call ... <Callee>" lines; the
# return site is the next instruction's address.
sites() { llvm-objdump -d --no-show-raw-insn "$1" | python3 -c '
import re, sys
name, start, pending = None, 0, None
for line in sys.stdin:
    header = re.match(r"^([0-9a-f]+) <(\w+)>:$", line)
    if header:
        name, start = header.group(2), int(header.group(1), 16)
        continue
    instruction = re.match(r"^\s*([0-9a-f]+):\s+(\S+)", line)
    if not instruction:
        continue
    address = int(instruction.group(1), 16)
    if pending:
        print(f"{name} 0x{address - start:x} {pending}")
        pending = None
    if instruction.group(2).startswith("call"):
        callee = re.search(r"<(\w+)>\s*$", line)
        pending = callee.group(1) if callee else "(indirect)"
'; }
sites ccdriver.sys > ccdriver.sites
sites ccchained.sys > ccchained.sites
cat ccdriver.sites ccchained.sites
