"""Is the `sam2` package from PyPI (the test oracle, `scripts/setup.sh --test`) Meta's code?

PyPI's `sam2==1.1.0` was not uploaded by Meta (see its metadata: author and home page). This script
compares every file of the installed `sam2` package, byte for byte, with the `sam2/` folder of a local
git clone of Meta's repository (https://github.com/facebookresearch/sam2) at a commit, and writes the
package's metadata and the result. Symbolic links in the repository (the four top-level config
aliases) are followed.

    git clone https://github.com/facebookresearch/sam2 /tmp/meta-sam2
    python scripts/check_sam2_provenance.py --repo /tmp/meta-sam2 --out docs/sam2_provenance.json
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import posixpath
import subprocess
from pathlib import Path


def _git(repo: str, *args: str, text: bool = True):
    return subprocess.run(["git", "--git-dir" if repo.endswith(".git") or Path(repo, "HEAD").is_file() else "-C",
                           repo, *args], check=True, capture_output=True, text=text).stdout


def _blob(repo: str, commit: str, path: str, depth: int = 0) -> bytes | None:
    """Content of path at commit, following symbolic links; None when absent."""
    try:
        entry = _git(repo, "ls-tree", commit, path).split()
    except subprocess.CalledProcessError:
        return None
    if not entry:
        return None
    data = _git(repo, "cat-file", "blob", entry[2], text=False)
    if entry[0] == "120000" and depth < 8:  # a symlink: its content is the target path
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), data.decode()))
        return _blob(repo, commit, target, depth + 1)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="a git clone (or bare git dir) of facebookresearch/sam2")
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    spec = importlib.util.find_spec("sam2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the sam2 package is not installed (scripts/setup.sh --test installs it)")
    root = Path(next(iter(spec.submodule_search_locations)))
    meta = importlib.metadata.metadata("sam2")
    commit = _git(a.repo, "rev-parse", a.commit).strip()
    same, differ, absent = [], [], []
    for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = "sam2/" + f.relative_to(root).as_posix()
        ref = _blob(a.repo, commit, rel)
        if ref is None:
            absent.append(rel)
        elif ref == f.read_bytes():
            same.append(rel)
        else:
            differ.append(rel)
    repo_files = [p for p in _git(a.repo, "ls-tree", "-r", "--name-only", commit, "sam2").split() if p]
    installed = {"sam2/" + p.relative_to(root).as_posix() for p in root.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
    res = dict(
        command=f"python scripts/check_sam2_provenance.py --repo <clone of facebookresearch/sam2> --out {a.out}",
        package=dict(name=meta["Name"], version=meta["Version"], author=meta.get("Author"),
                     home_page=meta.get("Home-page"), summary=meta.get("Summary")),
        meta_repository="https://github.com/facebookresearch/sam2",
        meta_commit=commit,
        meta_setup_py_version=next((ln.split("=")[1].strip().strip('"') for ln in
                                    (_blob(a.repo, commit, "setup.py") or b"").decode().splitlines()
                                    if ln.startswith("VERSION")), None),
        installed_files=len(same) + len(differ) + len(absent),
        identical=len(same), different=differ, not_in_meta_repository=absent,
        meta_files_not_installed=sorted(set(repo_files) - installed),
        installed_tree_sha256=hashlib.sha256(b"".join((root / r[5:]).read_bytes() for r in sorted(installed))).hexdigest(),
    )
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
