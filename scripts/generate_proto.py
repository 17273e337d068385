"""Generate the Python protobuf/gRPC modules and their .pyi stubs from proto/ into src/recsvc/v1.

Message stubs come from protoc's own ``--pyi_out``; the service stubs (``*_pb2_grpc.pyi``: servicer base
classes, client stubs) from mypy-protobuf's ``protoc-gen-mypy_grpc`` plugin (a ``dev`` dependency), so mypy
checks servicer signatures and client calls against the proto.

The generated files are checked in so that `pip install` needs no protoc; CI runs this script with
``--check`` and fails when the checked-in output differs from what proto/ generates.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
OUT_ROOT = ROOT / "src"
PACKAGE = Path("recsvc") / "v1"


def generate(out_root: Path) -> list[Path]:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE).glob("*.proto"))
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    plugin = shutil.which("protoc-gen-mypy_grpc", path=str(Path(sys.executable).parent)) or shutil.which(
        "protoc-gen-mypy_grpc")
    if plugin is None:
        raise SystemExit("protoc-gen-mypy_grpc not found: install the dev extra (mypy-protobuf)")
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out_root}",
            f"--pyi_out={out_root}", f"--grpc_python_out={out_root}",
            f"--plugin=protoc-gen-mypy_grpc={plugin}", f"--mypy_grpc_out={out_root}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_root / PACKAGE).glob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if checked-in code is stale")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(Path(tmp))
            stale = [p.name for p in fresh
                     if not (OUT_ROOT / PACKAGE / p.name).is_file()
                     or not filecmp.cmp(p, OUT_ROOT / PACKAGE / p.name, shallow=False)]
            if stale:
                print(f"generated protobuf code is stale: {', '.join(stale)}; "
                      "run python scripts/generate_proto.py", file=sys.stderr)
                return 1
        print("generated protobuf code is up to date")
        return 0
    for path in generate(Path(tempfile.mkdtemp())):
        shutil.copy(path, OUT_ROOT / PACKAGE / path.name)
        print(f"wrote {OUT_ROOT / PACKAGE / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
