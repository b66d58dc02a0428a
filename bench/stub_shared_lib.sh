#!/usr/bin/env bash
# Writes a stand-in for a shared library that the staged binaries link but never call, so the
# folder the device tool carries stays small: Debian's OpenCV links GDAL, GDCM, OpenEXR, LAPACK,
# BLAS and GLX (~150 MB with their own dependencies) for formats and routines the gateway never
# uses (it decodes JPEG, PNG and WebP and resizes), and libcurl (~10 MB with TLS, Kerberos, LDAP):
# image URLs cannot be fetched by a gateway staged so, inline images can. The stand-in has the real library's soname and
# defines every symbol the other staged files import from it (functions return 0, objects are
# zeroed of the real size), so the loader's BIND_NOW resolution succeeds; calling one is a bug.
#   bench/stub_shared_lib.sh REAL_LIB OUT_DIR IMPORTER...
set -euo pipefail
export LC_ALL=C
real="$1"
out="$2"
shift 2
soname=$(readelf -d "$real" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
work=$(mktemp -d)
# Symbols the importers need from it (name and version, "-" for none) that the real one defines.
nm -D --undefined-only "$@" 2>/dev/null | awk '{print $NF}' |
  awk -F@ '{print $1, (NF > 1 ? $NF : "-")}' | sort -u >"$work/wanted"
nm -D --defined-only -S "$real" | awk 'NF == 4 {sub(/@.*/, "", $4); print $4, $3, $2}' |
  sort -u -k1,1 >"$work/defined"
join "$work/wanted" "$work/defined" >"$work/stubbed"  # name version type size
{
  echo "/* Stand-in for $soname: see bench/stub_shared_lib.sh. */"
  while read -r name _ type size; do
    case "$type" in
      T | t | W | i) echo "long $name(void) { return 0; }" ;;
      *) echo "char $name[0x$size] __attribute__((aligned(16)));" ;;
    esac
  done <"$work/stubbed"
} >"$work/stub.c"
# Versioned imports (libcurl's CURL_OPENSSL_4) need the same version nodes.
awk '$2 != "-" {names[$2] = names[$2] " " $1 ";"}
  END {for (v in names) print v " { global:" names[v] " };"}' "$work/stubbed" >"$work/versions"
version_flag=()
[ -s "$work/versions" ] && version_flag=(-Wl,--version-script="$work/versions")
gcc -shared -fPIC -w -o "$out/$soname" -Wl,-soname,"$soname" "${version_flag[@]}" "$work/stub.c"
rm -rf "$work"
