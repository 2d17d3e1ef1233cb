"""Which machine types a dataset holds, at a data revision, without fetching any audio.

A machine type is a folder of the data dir that holds a `train/` or `test/` folder
(or DCASE 2021's `source_test/`, `target_test/`): the DCASE layout that
`asdflow.data.dcase_reader` reads. At `workspace` the data folder is listed as it
is on disk; at a git revision the folder is listed as data.dvc recorded it there,
through `dvc.api.DVCFileSystem`, which reads only the directory manifests (from the
DVC cache, else from the remote), never the clips, and checks nothing out. The
project may be a local checkout or a git URL (what a cluster step clones).

The pipeline commands and the schedules expand "every machine type" with this,
so a dataset decides what is trained, not a list in the config.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from asdflow.config import DataVersionConfig
from asdflow.data.dcase_reader import SPLIT_FOLDERS, _hidden
from asdflow.data.versioning import WORKSPACE, _is_local, _remote_settings
from asdflow.errors import DataError

# The folders that make a machine folder: the ones the DCASE reader reads as train or test.
MACHINE_FOLDER_MARKERS = frozenset(name for name, split in SPLIT_FOLDERS.items() if split in ("train", "test"))


def machine_types_at(
    project: str | Path,
    config: DataVersionConfig | None = None,
    rev: str = WORKSPACE,
) -> list[str]:
    """The machine types (sorted folder names) in `config.data_dir` of `project` at `rev`.

    `rev`: `workspace` (the folder on disk) or a git revision of data.dvc (a commit,
    tag, branch or `HEAD`). `project`: a folder or a git URL. DataError, naming the
    folder and the revision, when nothing can be listed or no machine folder is found.
    """
    cfg = config if config is not None else DataVersionConfig()
    if rev == WORKSPACE:
        found = _workspace_machine_types(project, cfg.data_dir)
    else:
        found = _committed_machine_types(project, cfg, rev)
    if not found:
        raise DataError(
            f"no machine type in {_where(project, cfg.data_dir)} at revision {rev!r}: expected "
            f"{cfg.data_dir}/<machine_type>/<train|test>/ folders"
        )
    return sorted(found)


def _where(project: str | Path, data_dir: str) -> str:
    return str(Path(project) / data_dir) if _is_local(project) else f"{data_dir}/ of {project}"


def _machine_folders(data_dir: str, list_folders: Callable[[str], Iterable[str]]) -> list[str]:
    """The children of `data_dir` that hold a train or test folder (hidden ones are not data)."""
    machines = []
    for name in list_folders(data_dir):
        if _hidden(name):
            continue
        if MACHINE_FOLDER_MARKERS & set(list_folders(posixpath.join(data_dir, name))):
            machines.append(name)
    return machines


# ---------------------------------------------------------------- workspace


def _workspace_machine_types(project: str | Path, data_dir: str) -> list[str]:
    if not _is_local(project):
        raise DataError(f"revision {WORKSPACE!r} needs a local project folder, not {project}")
    root = Path(project)
    if not (root / data_dir).is_dir():
        raise DataError(f"data folder not found: {root / data_dir} (revision {WORKSPACE!r})")

    def list_folders(path: str) -> list[str]:
        return [child.name for child in (root / path).iterdir() if child.is_dir()]

    return _machine_folders(data_dir, list_folders)


# ---------------------------------------------------------------- a git revision, through DVC


def _committed_machine_types(project: str | Path, cfg: DataVersionConfig, rev: str) -> list[str]:
    where = f"{_where(project, cfg.data_dir)} at revision {rev!r}"
    if _is_local(project) and not (Path(project) / ".dvc").is_dir():
        raise DataError(f"{where}: {project} is not a DVC repository (only {WORKSPACE!r} exists)")
    fs = _dvc_filesystem(project, cfg, rev)  # opens the repo lazily: its errors come from ls

    def list_folders(path: str) -> list[str]:
        return [posixpath.basename(entry["name"].rstrip("/"))
                for entry in fs.ls(path, detail=True) if entry["type"] == "directory"]

    try:
        return _machine_folders(cfg.data_dir, list_folders)
    except FileNotFoundError:
        raise DataError(f"{where}: no such folder there (was data.dvc committed at that revision?)") from None
    except Exception as err:  # DVC's own errors (unknown revision, clone, missing objects) as one line
        raise DataError(f"{where}: {_one_line(err)}{_hint(err)}") from None
    finally:
        fs.close()
        if not _is_local(project):
            _remove_temporary_clones()


def _dvc_filesystem(project: str | Path, cfg: DataVersionConfig, rev: str):
    """The data as DVC recorded it at `rev`; objects come from the cache, else from the remote
    the pipeline reads (`versioning._remote_settings`: the one `materialize_data` uses too)."""
    from dvc.api import DVCFileSystem

    return DVCFileSystem(
        str(Path(project).resolve()) if _is_local(project) else str(project),
        rev=rev,
        remote=cfg.remote,
        remote_config=_remote_settings(project, cfg.remote, cfg),
        config={"core": {"site_cache_dir": _site_cache_dir(project)}},
    )


def _remove_temporary_clones() -> None:
    """DVC clones a git URL (and makes a cache for it) under the temp dir; nothing else here uses them."""
    from dvc.repo.open_repo import clean_repos

    clean_repos()


def _site_cache_dir(project: str | Path) -> str:
    """DVC's per-repo state in the project's git-ignored .dvc/tmp, as `versioning` keeps it, not /var/tmp."""
    if _is_local(project):
        return str(Path(project).resolve() / ".dvc" / "tmp" / "site-cache")
    return str(Path(tempfile.gettempdir()) / "asdflow-dvc-site-cache")


def _one_line(err: BaseException) -> str:
    """The error's text, with its cause's when DVC wraps it in a generic one ("SCM error")."""
    text = str(err).strip()
    cause = str(err.__cause__ or "").strip()
    if cause and cause not in text:
        text = f"{text}: {cause}" if text else cause
    return " ".join(text.split())[:300] or type(err).__name__


def _hint(err: BaseException) -> str:
    text = str(err)
    if "Missing cache files" in text or "failed to load" in text or "No storage files" in text:
        return " (neither the DVC cache nor the remote holds this version: was it pushed?)"
    return ""
